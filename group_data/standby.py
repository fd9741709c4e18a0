"""Settings of the standby (Hetzner CAX11, ARM64): everything installed, nothing serving until it is
activated; then it serves until recovery hands traffic back."""

role = "standby"
services_enabled = False  # units present, disabled and stopped unless the standby is ACTIVE
standby_unit = "wirebot-standby"
standby_config = "/etc/wirebot/standby.yml"
standby_capabilities = [  # all the standby agent keeps of root (docs/security.md, "Least privilege")
    "CAP_CHOWN",  # restored databases and copied trees get the live owner
    "CAP_DAC_OVERRIDE",  # read the replica tree, write the services' data folders
    "CAP_FOWNER",  # set modes and times on files it does not own (rsync -a, chmod after chown)
]
