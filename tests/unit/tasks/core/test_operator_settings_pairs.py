"""The operator's settings file, `pairs:` form (tasks/core/operator_settings.py) and the real inventory built from
it: one group per pair, each host carrying its pair; the one-pair form keeps working unchanged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import operator_settings
from tasks.core.operator_settings import SettingsError, pair_settings

ROOT = Path(__file__).resolve().parents[4]

PAIRS = """\
pairs:
  wirebot:
    primary: {address: 203.0.113.10}
    standby: {address: 203.0.113.20, ssh_user: admin}
  acme:
    primary: {address: 198.51.100.10}
    standby: {address: 198.51.100.20}
    secrets_dir: SECRETS/acme-own
    data: {witness_public_url: "https://wins.acme.example/health"}
secrets_dir: SECRETS
"""


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    for name in ("WIREBOT_PRIMARY_ADDRESS", "WIREBOT_STANDBY_ADDRESS", "WIREBOT_SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path, text):
    path = tmp_path / "settings.yml"
    path.write_text(text.replace("SECRETS", str(tmp_path / "secrets")))
    return path


def test_the_pairs_form_gives_every_pair_its_hosts_and_secrets_directory(tmp_path):
    path = write(tmp_path, PAIRS)
    found = pair_settings(path=path)
    assert list(found) == ["wirebot", "acme"] and all(p["named"] for p in found.values())
    assert found["wirebot"]["primary"]["address"] == "203.0.113.10"
    assert found["wirebot"]["standby"]["ssh_user"] == "admin"
    assert found["wirebot"]["secrets_dir"] == tmp_path / "secrets" / "wirebot"  # default: <secrets_dir>/<name>
    assert found["acme"]["secrets_dir"] == tmp_path / "secrets" / "acme-own"
    assert found["acme"]["data"] == {"witness_public_url": "https://wins.acme.example/health"}


def test_the_one_pair_form_keeps_working(tmp_path, monkeypatch):
    path = write(tmp_path, "primary: {address: 203.0.113.10}\nstandby: {address: 203.0.113.20}\nsecrets_dir: SECRETS\n")
    found = pair_settings(path=path)
    assert list(found) == ["wirebot"] and not found["wirebot"]["named"]
    assert found["wirebot"]["secrets_dir"] == tmp_path / "secrets"  # not per name: as before
    monkeypatch.setenv("WIREBOT_STANDBY_ADDRESS", "198.51.100.9")
    assert pair_settings(path=path)["wirebot"]["standby"]["address"] == "198.51.100.9"


@pytest.mark.parametrize("text, expected", [
    (PAIRS + "primary: {address: 203.0.113.30}\n", "top-level 'primary' beside 'pairs'"),
    ("pairs: []\n", "'pairs' must map each pair's name"),
    ("pairs:\n  acme:\n    primary: {address: 198.51.100.10}\n", r"pairs.acme.standby must be a mapping"),
    ("pairs:\n  acme:\n    primary: {address: 198.51.100.10}\n    standby: {address: 198.51.100.20}\n"
     "    secret_dir: /x\n", r"pairs.acme.secret_dir is not a pair setting"),
    ("pairs:\n  acme:\n    primary: {address: nowhere}\n    standby: {address: 198.51.100.20}\n",
     r"pairs.acme.primary.address 'nowhere' .* must be an IP address"),
    ("pairs:\n  acme:\n    primary: {ssh_user: root}\n    standby: {address: 198.51.100.20}\n",
     r"no address for pairs.acme.primary"),
])
def test_a_malformed_pairs_form_says_what_to_set(tmp_path, text, expected):
    with pytest.raises(SettingsError, match=expected):
        pair_settings(path=write(tmp_path, text))


def test_the_address_variables_are_refused_with_several_pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("WIREBOT_PRIMARY_ADDRESS", "203.0.113.99")
    with pytest.raises(SettingsError, match="WIREBOT_PRIMARY_ADDRESS is set but .* uses the 'pairs:' form"):
        pair_settings(path=write(tmp_path, PAIRS))


BLOCK = """\
# my pairs (hand-written)
pairs:
    wirebot:   # ours
        primary:
            address: 203.0.113.10
        standby:
            # written by tasks/hetzner.py create --pair wirebot
            address: 203.0.113.20   # old
            ssh_user: admin
    acme:
        primary:
            address: 198.51.100.10
        standby:
            ssh_user: root   # no address yet
        hetzner: {server_name: acme-standby}
secrets_dir: SECRETS
"""


def changed(before: str, after: str) -> list:
    return [line for line in after.splitlines() if line not in before.splitlines()]


@pytest.mark.parametrize("text, pair, new_lines", [
    # flow mappings on the role's line (the second pair's identical layout is not touched)
    (PAIRS, "acme", ["    standby: {address: 198.51.100.99}"]),
    (PAIRS, "wirebot", ["    standby: {address: 198.51.100.99, ssh_user: admin}"]),
    # block mappings, 4-space indent, comments kept: the address line is replaced, or added
    (BLOCK, "wirebot", ['            address: "198.51.100.99"   # old']),
    (BLOCK, "acme", ['            address: "198.51.100.99"']),
    # an empty standby, and the only pair of a file named without --pair
    ("pairs:\n  acme:\n    primary: {address: 198.51.100.10}\n    standby: {}  # later\n",
     None, ["    standby: # later", '      address: "198.51.100.99"']),
    ("pairs:\n  acme:\n    standby:\n      ssh_user: root\n    primary:\n      address: 198.51.100.10\n",
     "acme", ['      address: "198.51.100.99"']),
])
def test_recording_an_address_in_the_pairs_form_edits_only_that_pairs_line(tmp_path, text, pair, new_lines):
    path = write(tmp_path, text)
    before, old = path.read_text(), operator_settings.load(path)
    operator_settings.save_address("standby", "198.51.100.99", path=path, pair=pair)
    after = path.read_text()
    assert changed(before, after) == new_lines
    assert len(changed(after, before)) <= 1  # at most the one line that was rewritten
    name = pair or "acme"
    old["pairs"][name]["standby"] = dict(old["pairs"][name]["standby"], address="198.51.100.99")
    assert operator_settings.load(path) == old  # nothing else changed, not even the other pair's address


@pytest.mark.parametrize("text, pair, expected", [
    (PAIRS, None, r"has 2 pairs \(acme, wirebot\): name the one .*--pair NAME"),
    (PAIRS, "acne", r"no pair 'acne' .*: its pairs are acme, wirebot"),
    ("primary: {address: 203.0.113.10}\n", "acme", r"no pair 'acme' .*one-pair form, whose pair is wirebot"),
    # layouts it does not edit by lines: the whole pair, or all pairs, as one flow mapping
    ("pairs:\n  acme: {primary: {address: 198.51.100.10}, standby: {}}\n", "acme",
     r"could not record pairs.acme.standby.address .*set it by hand: 'pairs: \{acme: \{standby: "
     r"\{address: 198.51.100.99\}\}\}'"),
    ("pairs: {acme: {primary: {address: 198.51.100.10}, standby: {address: 1.2.3.4}}}\n", "acme",
     r"set it by hand"),
    ("pairs:\n  acme:\n    primary: {address: 198.51.100.10}\n    standby: &s {address: 1.2.3.4}\n"
     "  other:\n    primary: {address: 198.51.100.11}\n    standby: *s\n", "acme", r"set it by hand"),
])
def test_recording_an_address_in_the_pairs_form_is_refused_untouched(tmp_path, text, pair, expected):
    path = write(tmp_path, text)
    before = path.read_text()
    with pytest.raises(SettingsError, match=expected):
        operator_settings.save_address("standby", "198.51.100.99", path=path, pair=pair)
    assert path.read_text() == before


def run_inventory(path, script):
    env = dict(os.environ, WIREBOT_SETTINGS=str(path))
    for name in ("WIREBOT_PRIMARY_ADDRESS", "WIREBOT_STANDBY_ADDRESS", "WIREBOT_SECRETS_DIR"):
        env.pop(name, None)
    script = "import runpy, tasks.core.settings_check as c; c.check_inventory = lambda *a: None; " + script
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_inventory_makes_a_group_per_pair_and_each_host_carries_its_pair(tmp_path):
    result = run_inventory(write(tmp_path, PAIRS), (
        "import json; ns = runpy.run_path('inventory.py'); "
        "print(json.dumps({k: ns[k] for k in ('primary', 'standby', 'wirebot', 'acme')}))"))
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)
    assert groups["wirebot"] == ["203.0.113.10", "203.0.113.20"]
    assert groups["acme"] == ["198.51.100.10", "198.51.100.20"]
    data = {name: values for name, values in groups["primary"] + groups["standby"]}
    assert {name: values["pair"] for name, values in data.items()} == {
        "203.0.113.10": "wirebot", "203.0.113.20": "wirebot", "198.51.100.10": "acme", "198.51.100.20": "acme"}
    assert data["198.51.100.20"]["secrets_dir"] == str(tmp_path / "secrets" / "acme-own")
    assert data["198.51.100.20"]["witness_public_url"] == "https://wins.acme.example/health"
    assert "witness_public_url" not in data["203.0.113.20"]


def test_the_one_pair_inventory_has_no_pair_groups(tmp_path):
    path = write(tmp_path, "primary: {address: 203.0.113.10}\nstandby: {address: 203.0.113.20}\n")
    result = run_inventory(path, "ns = runpy.run_path('inventory.py'); print(sorted(ns['primary'][0][1]), "
                                 "'wirebot' in ns)")
    assert result.returncode == 0, result.stderr
    assert "'pair'" not in result.stdout and result.stdout.strip().endswith("False")


def test_the_inventory_refuses_a_host_in_two_pairs_before_anything(tmp_path):
    text = PAIRS.replace("198.51.100.20", "203.0.113.20")  # acme's standby is wirebot's standby
    result = run_inventory(write(tmp_path, text), "runpy.run_path('inventory.py')")
    assert result.returncode != 0
    assert "host 203.0.113.20 is in two pairs ('wirebot' and 'acme')" in result.stderr
