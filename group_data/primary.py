"""Settings of the primary (AlmaLinux VPS in production): it serves, streams its databases and files to
the standby, and sends the heartbeat."""

role = "primary"
services_enabled = True  # gateway, scoreboard and cloudflared enabled and running
replicator_unit = "wirebot-replicator"
replicator_config = "/etc/wirebot/replicator.yml"
drill_command = []  # argv the replicator runs on POST /drill (empty: drills run from the control machine)
