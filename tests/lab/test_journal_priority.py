"""journald: each agent line is stored at its level's syslog priority, so `journalctl -p warning -u
'wirebot-*'` shows exactly the warnings, errors and alerts (files/agents/wirebot/common/log.py's sd-daemon
prefix on the journal's stream). Read-only for the deployed lab: the one extra unit is transient."""

import json
import uuid

from lab.machines import ssh

AGENTS = "/opt/wirebot/agents"  # group_data/all.py: wirebot_agents_dir
WRITER = (
    "from wirebot.common.log import log; from wirebot.common.alerts import Alerter;"
    "log('journaltest', 'plain-info', marker='{marker}');"
    "log('journaltest', 'a-warning', level='warning', marker='{marker}');"
    "log('journaltest', 'an-error', level='error', marker='{marker}');"
    "log('journaltest', 'some-debug', level='debug', marker='{marker}');"
    "Alerter('journaltest', None).send('journal-test', 'an alert', marker='{marker}')"
)


def lines(output):
    out = []
    for line in output.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_warning_priority_shows_exactly_warnings_errors_and_alerts():
    """The agents' own code, in a wirebot-* unit with journald's default SyslogLevelPrefix=yes."""
    marker = uuid.uuid4().hex[:12]
    unit = f"wirebot-journaltest-{marker}"
    code = WRITER.format(marker=marker)
    ssh("primary", f"systemd-run --quiet --wait --collect --unit {unit} --property=Type=exec "
                   f"--setenv=PYTHONPATH={AGENTS} /usr/bin/python3 -c \"{code}\"")
    shown = lines(ssh("primary", f"journalctl --no-pager -o cat -p warning -u 'wirebot-*' "
                                 f"| grep -F {marker}", check=False).stdout)
    assert sorted(entry["event"] for entry in shown) == ["a-warning", "alert", "an-error"]
    everything = [json.loads(line) for line in ssh("primary", f"journalctl --no-pager -o json -u {unit}")
                  .stdout.splitlines() if line.strip()]
    priorities = {json.loads(e["MESSAGE"])["event"]: e["PRIORITY"] for e in everything
                  if isinstance(e.get("MESSAGE"), str) and e["MESSAGE"].startswith("{") and marker in e["MESSAGE"]}
    assert priorities == {"plain-info": "6", "a-warning": "4", "an-error": "3", "some-debug": "7", "alert": "4"}
    assert all(not e["MESSAGE"].startswith("<") for e in everything if isinstance(e.get("MESSAGE"), str))


def test_deployed_agents_info_lines_stay_out_of_warning_priority():
    """The running agents: their info lines (there always are some) are at priority 6, so -p warning
    shows none of them; whatever it shows is a warning, an error or worse."""
    for host, unit in (("primary", "wirebot-replicator"), ("standby", "wirebot-standby")):
        info = [json.loads(line) for line in ssh(host, f"journalctl --no-pager -o json -u {unit} -p 6..6 -n 200")
                .stdout.splitlines() if line.strip()]
        infos = [e for e in info if isinstance(e.get("MESSAGE"), str) and '"level": "info"' in e["MESSAGE"]]
        assert infos, f"no info lines of {unit} at priority 6"
        warned = lines(ssh(host, f"journalctl --no-pager -o cat -p warning -u {unit}", check=False).stdout)
        assert all(entry.get("level") in ("warning", "error", "critical") for entry in warned), warned[:3]
