"""pyinfra inventory of two fake AlmaLinux 9 hosts (the @fake connector runs nothing): the production
code paths the lab cannot run (dnf, Cloudflare's rpm repository, Node.js and npm's openclaw) are
planned against them. WIREBOT_FAKE_SECRETS names the secrets directory to use."""

import os
import re

from tasks.core.settings_check import check_inventory

_ALMA = "\n".join([
    'NAME="AlmaLinux"', 'VERSION="9.4 (Seafoam Ocelot)"', 'ID="almalinux"', 'ID_LIKE="rhel centos fedora"',
    'VERSION_ID="9.4"', 'PRETTY_NAME="AlmaLinux 9.4 (Seafoam Ocelot)"',
])


def _host(arch: str, address: str) -> dict:
    return {
        "ssh_hostname": address,  # documentation addresses (RFC 5737): the firewall names the peer by address
        "secrets_dir": os.environ["WIREBOT_FAKE_SECRETS"],
        "fake_delay": 0,
        "fake_delay_jitter": 0,
        "fake_responses": {
            "command -v apt-get": {"stdout": ""},
            "command -v": "/usr/bin/found",  # every other tool is there (dnf, useradd, npm, ...)
            "uname -m": arch,
            "uname -s": "Linux",
            "ssh_host_ecdsa_key.pub": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFAKE",
            "ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKEFAKEFAKE",
            "agent-keys/agent.crt": "-----BEGIN CERTIFICATE-----\nFAKE\n-----END CERTIFICATE-----",
            re.compile(r"os-release"): _ALMA,
        },
    }


primary = [("@fake/primary.example", _host("x86_64", "203.0.113.10"))]
standby = [("@fake/standby.example", dict(_host("aarch64", "203.0.113.20"), agent_metrics_sources=["198.51.100.7"]))]
check_inventory({"primary": primary, "standby": standby}, __file__)
