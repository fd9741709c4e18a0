"""A bad setting stops the deploy before anything on the hosts changes (issue 12): --data values, unknown keys
(with "did you mean") and broken timing relations are refused where pyinfra has the final host data."""

import pytest

from lab.commands import changes_in_dry_run, pyinfra
from lab.machines import ssh

CONFIGS = {"primary": "/etc/wirebot/replicator.yml", "standby": "/etc/wirebot/standby.yml"}


def _fingerprints():
    """The agents' configs (content hash and change time) and the agents' main PIDs on both hosts."""
    out = {}
    for name, path in CONFIGS.items():
        unit = "wirebot-replicator" if name == "primary" else "wirebot-standby"
        out[name] = ssh(name, f"sha256sum {path}; stat -c %Z {path}; systemctl show -p MainPID --value {unit}"
                        ).stdout
    return out


@pytest.mark.parametrize("data, expected", [
    ("heartbeat_interval_seconds=30s", "--data: setting 'heartbeat_interval_seconds' must be a positive whole "
                                       "number from 1 to 600, not '30s'"),
    ("heartbeat_intervall_seconds=10", "--data: unknown setting 'heartbeat_intervall_seconds' (did you mean "
                                       "heartbeat_interval_seconds?)"),
    ("fencing_lease_seconds=3", "fencing_lease_seconds=3 breaks 3 x fencing_lease_renew_seconds <= "
                                "fencing_lease_seconds <= heartbeat_interval_seconds * (heartbeat_miss_threshold - 1)"),
])
def test_a_bad_setting_stops_the_deploy_and_nothing_changes(data, expected):
    before = _fingerprints()
    result = pyinfra("--data", data, "lab/inventory.py", "deploy.py", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output, output[-3000:]
    assert "(nothing was changed on any host)" in output
    assert "Beginning operation run" not in output
    assert _fingerprints() == before


def test_data_values_of_the_right_kind_are_coerced_and_change_nothing():
    """`--data` gives strings or what pyinfra made of them: 3 is the whole number 3, 7844 the list [7844],
    "yes" true: the deployed configs stay exactly as they are (no change in the plan)."""
    assert changes_in_dry_run("deploy.py", "--data", "heartbeat_miss_threshold=3", "--data",
                              "fencing_tunnel_ports=7844", "--data", "packages_update_cache=yes") == []
