"""tasks/core/operator_settings.save_address: the operator's settings file keeps every comment and its layout;
only the one address line changes (or is added)."""

import os
import stat

import pytest
import yaml

from tasks.core import operator_settings

COMMENTED = """\
# My Wirebot settings (hand-written; keep my notes)
primary:
  address: 203.0.113.10   # the primary, Hetzner DE
  ssh_user: root

standby:
    # written by tasks/hetzner.py create
    address: 203.0.113.20   # old standby
    ssh_key: ~/.ssh/id_ed25519

hetzner:
  operator_cidrs: [198.51.100.7/32, 2001:db8:77::/48]   # home and office
  labels: {app: wirebot, role: standby}
  location: fsn1
secrets_dir: ~/.config/wirebot/secrets
"""


def changed_lines(before: str, after: str) -> list:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]


def test_only_the_address_line_changes_comments_and_layout_stay(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text(COMMENTED)
    operator_settings.save_address("standby", "198.51.100.99", path=path)
    after = path.read_text()
    assert len(after.splitlines()) == len(COMMENTED.splitlines())
    assert changed_lines(COMMENTED, after) == [("    address: 203.0.113.20   # old standby",
                                                '    address: "198.51.100.99"   # old standby')]
    assert operator_settings.load(path)["standby"] == {"address": "198.51.100.99", "ssh_key": "~/.ssh/id_ed25519"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_clearing_and_ipv6_stay_strings(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text(COMMENTED)
    operator_settings.save_address("standby", "", path=path)
    assert operator_settings.load(path)["standby"]["address"] == ""
    operator_settings.save_address("standby", "2001:0:0:1", path=path)  # YAML 1.1 would read 2001:0:0:1 as a number
    assert operator_settings.load(path)["standby"]["address"] == "2001:0:0:1"
    assert "# old standby" in path.read_text() and "# home and office" in path.read_text()


@pytest.mark.parametrize("text, expected_tail", [
    ("primary:\n  address: 203.0.113.10  # p\n", "standby:\n  address: \"203.0.113.5\"\n"),
    ("primary:\n  address: 203.0.113.10  # p", "standby:\n  address: \"203.0.113.5\"\n"),
    ("standby:  # the standby\n  ssh_user: admin\nprimary: {address: 203.0.113.10}\n",
     "standby:  # the standby\n  address: \"203.0.113.5\"\n  ssh_user: admin\nprimary: {address: 203.0.113.10}\n"),
    ("standby: {ssh_user: admin}  # flow\n", "standby: {address: 203.0.113.5, ssh_user: admin} # flow\n"),
    ("standby:\n", "standby:\n  address: \"203.0.113.5\"\n"),
    ("standby: null  # later\nprimary:\n  address: 203.0.113.10\n",
     "standby: # later\n  address: \"203.0.113.5\"\nprimary:\n  address: 203.0.113.10\n"),
])
def test_missing_address_or_section_is_added_in_place(tmp_path, text, expected_tail):
    path = tmp_path / "settings.yml"
    path.write_text(text)
    operator_settings.save_address("standby", "203.0.113.5", path=path)
    assert path.read_text().endswith(expected_tail)
    assert operator_settings.load(path)["standby"]["address"] == "203.0.113.5"


def test_new_file(tmp_path):
    path = tmp_path / "sub" / "settings.yml"
    operator_settings.save_address("standby", "203.0.113.5", path=path)
    assert yaml.safe_load(path.read_text()) == {"standby": {"address": "203.0.113.5"}}


def test_a_layout_it_cannot_edit_by_line_is_refused_untouched(tmp_path):
    path = tmp_path / "settings.yml"
    text = "standby: &s\n  address: 203.0.113.20\nother: *s\n"  # an anchor shared with another key
    path.write_text(text)
    with pytest.raises(operator_settings.SettingsError, match="set it by hand"):
        operator_settings.save_address("standby", "203.0.113.5", path=path)
    assert path.read_text() == text


def test_the_one_pair_form_accepts_its_own_pair_name(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text(COMMENTED)
    operator_settings.save_address("standby", "198.51.100.99", path=path, pair="wirebot")
    assert operator_settings.load(path)["standby"]["address"] == "198.51.100.99"
