"""Settings of the standby (Hetzner CAX11, ARM64): everything installed, nothing serving until it is
activated; then it serves until recovery hands traffic back."""

role = "standby"
services_enabled = False  # units present, disabled and stopped unless the standby is ACTIVE
standby_unit = "wirebot-standby"
standby_config = "/etc/wirebot/standby.yml"
