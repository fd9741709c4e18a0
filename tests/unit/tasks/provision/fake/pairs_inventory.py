"""Two pairs of fake AlmaLinux 9 hosts in one inventory (tasks/core/pairs.py): pair `wirebot`
(WIREBOT_FAKE_SECRETS) and pair `acme` (WIREBOT_FAKE_SECRETS_ACME), each with its own secrets and
tunnel. The @fake connector runs nothing: the plan shows who each host trusts, streams to and pins."""

import os
import runpy
from pathlib import Path

from tasks.core.pairs import check_hosts
from tasks.core.settings_check import check_inventory

_host = runpy.run_path(str(Path(__file__).with_name("inventory.py")))["_host"]


def _pair_host(arch: str, address: str, pair: str, secrets: str) -> dict:
    return dict(_host(arch, address), pair=pair, secrets_dir=os.environ[secrets])


primary = [("@fake/primary.example", _pair_host("x86_64", "203.0.113.10", "wirebot", "WIREBOT_FAKE_SECRETS")),
           ("@fake/acme-primary.example", _pair_host("x86_64", "198.51.100.10", "acme", "WIREBOT_FAKE_SECRETS_ACME"))]
standby = [("@fake/standby.example", _pair_host("aarch64", "203.0.113.20", "wirebot", "WIREBOT_FAKE_SECRETS")),
           ("@fake/acme-standby.example", _pair_host("aarch64", "198.51.100.20", "acme", "WIREBOT_FAKE_SECRETS_ACME"))]
wirebot = ["@fake/primary.example", "@fake/standby.example"]
acme = ["@fake/acme-primary.example", "@fake/acme-standby.example"]
check_hosts({"primary": primary, "standby": standby}, __file__)
check_inventory({"primary": primary, "standby": standby}, __file__)
