"""Settings of the primary (AlmaLinux VPS in production): it serves, streams its databases and files to
the standby, and sends the heartbeat."""

role = "primary"
services_enabled = True  # gateway, scoreboard and cloudflared enabled and running
replicator_unit = "wirebot-replicator"
replicator_config = "/etc/wirebot/replicator.yml"
replicator_capabilities = [  # all the replicator keeps of root (docs/security.md, "Least privilege")
    "CAP_DAC_READ_SEARCH",  # read the synced trees whatever their owner and mode
    "CAP_NET_ADMIN",  # update the nftables serving lease (the fence)
]
drill_command = []  # argv the replicator runs on POST /drill (empty: drills run from the control machine)
