"""Least privilege on the lab (issue 9, "Least privilege"): every unit the deploy sandboxes stays within its
`systemd-analyze security` target, runs as the user it should with only the capabilities it should, and
cannot read another service's secrets, checked from inside the running service's own mount namespace
and with its own user and capabilities, as an attacker who took the service over would try.

Not destructive: reads only (a fresh deploy, reset when it is not).
"""

import re

import pytest

from lab.machines import ssh

TARGETS = [  # host, unit, highest exposure allowed (the issue's targets)
    ("primary", "wirebot-replicator", 4.0),
    ("standby", "wirebot-standby", 4.0),
    ("primary", "litestream", 6.0),
    ("primary", "cloudflared-wirebot", 6.0),
    ("standby", "cloudflared-wirebot", 6.0),
    ("primary", "wirebot-scoreboard", 6.0),
    ("standby", "wirebot-scoreboard", 6.0),
]
CAPS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_NET_ADMIN": 12,
        "CAP_SYS_ADMIN": 21, "CAP_SYS_PTRACE": 19, "CAP_SETUID": 7}
ROOT_UNITS = [  # host, unit, capabilities it keeps (group_data: *_capabilities)
    ("primary", "wirebot-replicator", {"CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN"}),
    ("primary", "litestream", {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"}),
    ("standby", "wirebot-standby", {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"}),
]
HMAC, WEBHOOK = "/run/wirebot/agent-hmac.key", "/run/wirebot/discord-webhook.url"
TOKEN = "/run/wirebot/cloudflare-api-token"
GATEWAY_ENV = "/run/wirebot/gateway.env"
PERSISTED = "/etc/wirebot/secrets/agent-hmac.key"
REPLICATION_KEY, FENCE_KEY = "/root/.ssh/wirebot-replication", "/root/.ssh/wirebot-fence"
TUNNEL_CONFIG = "/etc/cloudflared/wirebot.yml"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
VIEWS = [  # host, unit, secrets it reads, secrets it must not read (from inside the service)
    ("primary", "wirebot-replicator", [HMAC, WEBHOOK, REPLICATION_KEY],
     [GATEWAY_ENV, TOKEN, PERSISTED, TUNNEL_CONFIG, HOST_KEY]),
    ("primary", "litestream", [REPLICATION_KEY],
     [HMAC, WEBHOOK, GATEWAY_ENV, PERSISTED, TUNNEL_CONFIG, HOST_KEY]),
    ("standby", "wirebot-standby", [HMAC, WEBHOOK, TOKEN, FENCE_KEY],
     [GATEWAY_ENV, PERSISTED, TUNNEL_CONFIG, HOST_KEY]),
    ("primary", "wirebot-scoreboard", [],
     [HMAC, GATEWAY_ENV, PERSISTED, REPLICATION_KEY, TUNNEL_CONFIG, HOST_KEY, "/etc/shadow"]),
    ("primary", "cloudflared-wirebot", ["/run/credentials/cloudflared-wirebot.service/credentials.json"],
     [HMAC, GATEWAY_ENV, PERSISTED, REPLICATION_KEY, TUNNEL_CONFIG, HOST_KEY]),
]


def exposure(host: str, unit: str) -> float:
    out = ssh(host, f"systemd-analyze security --no-pager {unit}.service | tail -n1").stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    return float(match.group(1))


def main_pid(host: str, unit: str) -> int:
    pid = int(ssh(host, f"systemctl show -p MainPID --value {unit}").stdout.strip() or 0)
    assert pid > 0, f"{unit} is not running on {host}"
    return pid


def process(host: str, pid: int) -> dict:
    """Uid, gid, groups and capability sets of a process, from /proc/PID/status."""
    status = dict(line.split(":\t", 1) for line in ssh(host, f"cat /proc/{pid}/status").stdout.splitlines()
                  if ":\t" in line)
    caps = {name: {cap for cap, bit in CAPS.items() if int(status[name], 16) >> bit & 1}
            | ({"other"} if int(status[name], 16) & ~sum(1 << bit for bit in CAPS.values()) else set())
            for name in ("CapEff", "CapBnd", "CapAmb")}
    return {"uid": int(status["Uid"].split()[0]), "gid": int(status["Gid"].split()[0]), **caps}


def as_the_service(host: str, unit: str, command: str):
    """Run `command` inside the unit's mount namespace, as its user, with its capabilities only."""
    pid = main_pid(host, unit)
    proc = process(host, pid)
    keep = ",".join("+" + cap.lower()[4:] for cap in sorted(proc["CapEff"] - {"other"})) or "-all"
    return ssh(host, f"nsenter -t {pid} -m -- setpriv --reuid={proc['uid']} --regid={proc['gid']} --clear-groups "
                     f"--inh-caps=-all --bounding-set=-all{',' + keep if keep != '-all' else ''} -- {command}",
               check=False)


@pytest.mark.parametrize("host,unit,target", TARGETS)
def test_exposure_is_within_target(host, unit, target):
    assert exposure(host, unit) <= target


@pytest.mark.parametrize("host,unit,kept", ROOT_UNITS)
def test_root_units_keep_only_their_capabilities(host, unit, kept):
    proc = process(host, main_pid(host, unit))
    assert proc["uid"] == 0  # systemctl (start, stop, is-active of other units) needs uid 0: no polkit
    assert proc["CapBnd"] == kept and proc["CapEff"] == kept and proc["CapAmb"] == set()
    assert ssh(host, f"systemctl show -p NoNewPrivileges --value {unit}").stdout.strip() == "yes"


def test_scoreboard_runs_as_its_own_user_without_capabilities(primary):
    proc = process("primary", main_pid("primary", "wirebot-scoreboard"))
    assert proc["uid"] == primary.user("wirebot-scoreboard").uid != primary.user("wirebot").uid
    assert proc["CapEff"] == proc["CapBnd"] == set()
    assert primary.file("/data/wirebot/scoreboard/events.db").user == "wirebot-scoreboard"


def test_connector_runs_as_a_dynamic_user_without_capabilities():
    proc = process("primary", main_pid("primary", "cloudflared-wirebot"))
    assert 61184 <= proc["uid"] <= 65519  # systemd's range for DynamicUser=
    assert proc["CapEff"] == proc["CapBnd"] == set()


@pytest.mark.parametrize("host,unit,readable,hidden", VIEWS, ids=[f"{h}-{u}" for h, u, _, _ in VIEWS])
def test_each_service_reads_only_its_own_secrets(host, unit, readable, hidden):
    missing = ssh(host, " ".join(f"test -s {path} || echo {path};" for path in hidden)).stdout.split()
    assert not missing, f"not on {host}, so nothing to hide: {missing}"
    probe = " ".join(f"echo {path} $(head -c1 {path} 2>/dev/null | wc -c);" for path in readable + hidden)
    result = as_the_service(host, unit, f"sh -c '{probe}'")
    assert result.returncode == 0, result.stderr
    bytes_read = {path: int(count) for path, count in (line.split() for line in result.stdout.splitlines())}
    assert [path for path in readable if not bytes_read[path]] == [], f"{unit} cannot read its own secrets"
    assert [path for path in hidden if bytes_read[path]] == [], f"{unit} on {host} reads others' secrets"


def test_scoreboard_user_cannot_read_the_gateways_environment():
    gateway = main_pid("primary", "openclaw-gateway")
    environ = f"/proc/{gateway}/environ"
    owner = process("primary", gateway)
    control = ssh("primary", f"setpriv --reuid={owner['uid']} --regid={owner['gid']} --clear-groups "
                             f"-- grep -c -a OPENCLAW_LAB_MODEL_KEY {environ}", check=False)
    assert control.returncode == 0, f"the gateway's own user cannot read {environ}: no test ({control.stderr})"
    from_outside = ssh("primary", f"setpriv --reuid=wirebot-scoreboard --regid=wirebot-scoreboard --clear-groups "
                                  f"--inh-caps=-all -- cat {environ}", check=False)
    assert from_outside.returncode != 0 and not from_outside.stdout
    from_inside = as_the_service("primary", "wirebot-scoreboard", f"cat {environ}")
    assert from_inside.returncode != 0 and not from_inside.stdout


def test_scoreboard_cannot_list_the_gateways_data():
    for path in ("/data/wirebot/users", "/home/wirebot/clawd", "/data/wirebot"):
        result = as_the_service("primary", "wirebot-scoreboard", f"ls {path}")
        assert result.returncode != 0, f"the scoreboard lists {path}: {result.stdout}"
