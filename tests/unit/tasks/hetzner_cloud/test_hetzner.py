"""tasks/hetzner.py against the local Hetzner API stand-in (lab/standins/hcloud.py, 127.0.0.1 only).

No test reaches the real API: HCLOUD_ENDPOINT always points at the stand-in, and hcloud's
`time.sleep` is replaced so its action polling and retry backoff cost no time (the calls are recorded).
"""

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import hcloud._client as hcloud_client
import hcloud.actions.client as hcloud_actions
import pytest
import yaml
from hcloud import APIException

from lab.standins.hcloud import HcloudStandin, md5_fingerprint
from tasks import hetzner
from tasks.hetzner_cloud import config, errors, resources

ROOT = Path(__file__).resolve().parents[4]

TOKEN = "tok-3f9c1d7e-a61b-never-print-me"
# Generated with ssh-keygen; the fingerprints are `ssh-keygen -E md5 -lf` of each.
OPERATOR_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPACumaoYDXaknseo1kKapl2qz/Zij1k3dUihj8pZnXE operator@laptop"
)
OPERATOR_MD5 = "d6:da:16:83:39:0b:bc:0d:a7:94:8b:90:5b:a1:a6:95"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH2/UEdgHD7yhMLgffj0dtnCjKnMIhXxnQOpeZniQxc+ other@laptop"
OTHER_MD5 = "f0:92:16:30:dd:d0:de:49:95:c3:86:bc:14:da:9d:ab"
OPERATOR_CIDRS = ["198.51.100.7/32", "2001:db8:77::/48"]
PRIMARY = "192.0.2.10"
LABELS = {"app": "wirebot", "role": "standby"}
CREATED = "2024-01-01T00:00:00+00:00"


class Env:
    """The stand-in, the temp settings file, and a runner for the command."""

    def __init__(self, standin: HcloudStandin, tmp_path: Path):
        self.standin = standin
        self.settings = tmp_path / "settings.yml"
        self.key = tmp_path / "id_ed25519.pub"
        self.key.write_text(OPERATOR_KEY + "\n")

    def write(self, **hetzner_section) -> None:
        section = {"location": "fsn1", "operator_cidrs": OPERATOR_CIDRS, "primary_address": PRIMARY,
                   "ssh_public_key": str(self.key), **hetzner_section}
        section = {k: v for k, v in section.items() if v is not None}
        data = {"primary": {"address": PRIMARY}, "hetzner": section}
        if self.settings.exists() and "standby" in self.data():  # as recorded by a previous create
            data["standby"] = self.data()["standby"]
        self.settings.write_text(yaml.safe_dump(data))

    def data(self) -> dict:
        return yaml.safe_load(self.settings.read_text())

    def post_paths(self) -> list:
        return [(r.method, r.path) for r in self.standin.writes()]


@pytest.fixture
def sleeps(monkeypatch):
    """Recorded instead of slept: hcloud's action polling and retry backoff (only hcloud's `time`)."""
    calls = []
    for module in (hcloud_client, hcloud_actions):
        monkeypatch.setattr(module, "time", SimpleNamespace(sleep=calls.append))
    monkeypatch.setattr(resources.time, "sleep", calls.append)  # our action progress loop
    return calls


@pytest.fixture
def env(tmp_path, monkeypatch, sleeps):
    standin = HcloudStandin(TOKEN)
    endpoint = standin.start()
    assert endpoint.startswith("http://127.0.0.1:")
    for name in ("WIREBOT_STANDBY_ADDRESS", "WIREBOT_PRIMARY_ADDRESS", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("HCLOUD_TOKEN", TOKEN)
    monkeypatch.setenv("HCLOUD_ENDPOINT", endpoint)
    env = Env(standin, tmp_path)
    monkeypatch.setenv("WIREBOT_SETTINGS", str(env.settings))
    env.write()
    yield env
    standin.stop()


def test_fingerprint_is_hetzner_md5_of_the_key_blob(env):
    assert config.read_public_key(env.key) == (OPERATOR_KEY, OPERATOR_MD5)
    assert md5_fingerprint(OTHER_KEY) == OTHER_MD5


def test_first_run_creates_key_firewall_server_and_records_address(env, capsys):
    assert hetzner.main(["create"]) == 0
    out = capsys.readouterr().out
    assert env.post_paths() == [("POST", "/ssh_keys"), ("POST", "/firewalls"), ("POST", "/servers")]
    key, firewall, server = env.standin.ssh_keys[0], env.standin.firewalls[0], env.standin.servers[0]
    assert key["fingerprint"] == OPERATOR_MD5 and key["name"] == "wirebot-operator"
    body = env.standin.calls("POST", "/servers")[0].body
    assert body["name"] == "wirebot-standby" and body["labels"] == LABELS
    assert body["server_type"] == 45 and body["location"] == 1 and body["image"] == 114690389  # arm image
    assert body["ssh_keys"] == [key["id"]] and body["firewalls"] == [{"firewall": firewall["id"]}]
    # waited for create_server and start_server: each polled until it finished
    polled = {r.path for r in env.standin.requests if r.path.startswith("/actions/")}
    assert len(polled) == 2 and server["status"] == "running"
    ipv4 = server["public_net"]["ipv4"]["ip"]
    assert env.data()["standby"] == {"address": ipv4}
    assert env.data()["primary"] == {"address": PRIMARY}  # the rest of the file is kept
    assert f"IPv4: {ipv4}" in out and "IPv6: 2001:db8:" in out
    assert "cax11 in fsn1: 4.51 EUR/month (gross)" in out  # 3.79 net + 19 % VAT, from the API


def test_second_run_creates_nothing(env, capsys):
    assert hetzner.main(["create"]) == 0
    before = len(env.standin.writes())
    assert hetzner.main(["create"]) == 0
    assert len(env.standin.writes()) == before == 3
    out = capsys.readouterr().out
    assert "firewall: 'wirebot-standby' is up to date" in out and "server: found 'wirebot-standby'" in out


def test_firewall_rules_are_exact(env):
    assert hetzner.main(["create"]) == 0
    rules = env.standin.firewalls[0]["rules"]
    inbound = sorted((r["direction"], r["protocol"], r["port"], sorted(r["source_ips"])) for r in rules)
    assert inbound == [
        ("in", "tcp", "22", sorted(OPERATOR_CIDRS)),
        ("in", "tcp", "8300", [f"{PRIMARY}/32"]),
    ]
    assert all(r["destination_ips"] == [] for r in rules)


def test_ipv6_primary_is_a_single_address_and_bare_cidrs_are_normalised(env):
    env.write(primary_address="2001:db8:5::10", operator_cidrs=["198.51.100.7"])
    spec = config.resolve(hetzner.DEFAULTS, {}, env.settings)
    assert spec.primary_cidr == "2001:db8:5::10/128" and spec.operator_cidrs == ("198.51.100.7/32",)


def test_rules_drift_is_set_once(env, capsys):
    assert hetzner.main(["create"]) == 0
    env.standin.firewalls[0]["rules"].append({"description": None, "direction": "in", "protocol": "tcp",
                                              "port": "80", "source_ips": ["0.0.0.0/0"],
                                              "destination_ips": []})
    assert hetzner.main(["create"]) == 0
    fw_id = env.standin.firewalls[0]["id"]
    assert env.post_paths()[3:] == [("POST", f"/firewalls/{fw_id}/actions/set_rules")]
    assert hetzner.main(["create"]) == 0
    assert len(env.standin.writes()) == 4
    assert [r["port"] for r in env.standin.firewalls[0]["rules"]] == ["22", "8300"]
    assert "rules of 'wirebot-standby' replaced" in capsys.readouterr().out


def test_unavailable_type_creates_nothing_and_lists_alternatives(env, capsys):
    env.write(location=None)  # the default: cax11 in ash, as the seed asks
    assert hetzner.main(["create"]) == 3
    err = capsys.readouterr().err
    assert env.standin.writes() == []
    assert "server type 'cax11' is not offered in ash (Ashburn, VA)" in err
    assert "cax11 in fsn1 (Falkenstein DC Park 1): 4.51 EUR/month" in err
    assert "cpx22 (x86, 2 vCPU, 4 GB RAM, 80 GB disk): 11.29 EUR/month" in err
    assert "cax21" not in err.split("cheapest types offered in ash:")[1]
    assert "cpx11" not in err  # removed at the end of 2025: not offered, not proposed


def test_dry_run_and_plan_create_nothing(env, capsys):
    for argv in (["create", "--dry-run"], ["plan"]):
        assert hetzner.main(argv) == 0
    assert env.standin.writes() == []
    out = capsys.readouterr().out
    assert "ssh key: would upload" in out and "firewall: would create" in out
    assert "server: would create 'wirebot-standby': cax11 in fsn1" in out
    assert "standby" not in env.data()


def test_key_with_our_name_but_another_fingerprint_is_refused(env, capsys):
    env.standin.ssh_keys.append({"id": 7, "name": "wirebot-operator", "fingerprint": OTHER_MD5,
                                 "public_key": OTHER_KEY, "labels": {}, "created": CREATED})
    assert hetzner.main(["create"]) == 5
    err = capsys.readouterr().err
    assert OTHER_MD5 in err and OPERATOR_MD5 in err and "not reusing it" in err
    assert env.standin.writes() == []


def test_key_found_by_fingerprint_under_another_name_is_reused(env):
    env.standin.ssh_keys.append({"id": 8, "name": "laptop", "fingerprint": OPERATOR_MD5,
                                 "public_key": OPERATOR_KEY, "labels": {}, "created": CREATED})
    assert hetzner.main(["create"]) == 0
    assert ("POST", "/ssh_keys") not in env.post_paths()
    assert env.standin.calls("POST", "/servers")[0].body["ssh_keys"] == [8]


def test_server_with_our_name_but_other_labels_is_not_touched(env, capsys):
    assert hetzner.main(["create"]) == 0
    env.standin.servers[0]["labels"] = {"app": "something-else"}
    before = len(env.standin.writes())
    assert hetzner.main(["create"]) == 5
    assert hetzner.main(["delete", "--confirm", "wirebot-standby"]) == 5
    assert len(env.standin.writes()) == before
    assert "without the labels app=wirebot,role=standby: not ours" in capsys.readouterr().err


def test_refusals_come_before_anything_is_created(env, capsys):
    env.standin.servers.append({"id": 9, "name": "wirebot-standby", "labels": {}, "status": "running",
                                "public_net": None, "server_type": None})
    assert hetzner.main(["create"]) == 5
    env.standin.servers.clear()
    env.standin.firewalls.append({"id": 10, "name": "wirebot-standby", "labels": {}, "rules": [],
                                  "applied_to": [], "created": CREATED})
    assert hetzner.main(["create"]) == 5
    assert env.standin.writes() == []
    err = capsys.readouterr().err
    assert "a server named 'wirebot-standby' exists (id 9)" in err and "a firewall named" in err


def test_found_server_without_our_firewall_gets_it_attached_once(env):
    assert hetzner.main(["create"]) == 0
    env.standin.servers[0]["public_net"]["firewalls"] = []
    assert hetzner.main(["create"]) == 0
    assert hetzner.main(["create"]) == 0
    fw_id = env.standin.firewalls[0]["id"]
    assert env.post_paths()[3:] == [("POST", f"/firewalls/{fw_id}/actions/apply_to_resources")]


def test_unknown_location_and_past_deprecation_are_unavailable(env, capsys):
    assert hetzner.main(["plan", "--location", "mars"]) == 3
    assert "location 'mars' does not exist; the API offers: ash, fsn1, hel1, hil, nbg1, sin" in (
        capsys.readouterr().err
    )
    cax11 = env.standin.server_types[0]
    cax11["locations"][0]["deprecation"] = {"announced": CREATED, "unavailable_after": CREATED}
    assert hetzner.main(["plan"]) == 3  # fsn1: past its unavailable_after
    assert "cax11 in nbg1 (Nuremberg DC Park 1): 4.51 EUR/month" in capsys.readouterr().err
    assert env.standin.writes() == []


def test_unreachable_api_is_one_line(env, monkeypatch, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    monkeypatch.setenv("HCLOUD_ENDPOINT", endpoint)
    assert hetzner.main(["plan"]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the Hetzner API at {endpoint}") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["delete"], ["delete", "--confirm", "wirebot"]])
def test_delete_refuses_without_the_exact_name(env, capsys, argv):
    assert hetzner.main(argv) == 5
    assert env.standin.requests == []
    assert "delete --confirm wirebot-standby" in capsys.readouterr().err


def test_delete_with_the_exact_name_deletes_and_clears_the_address(env, capsys):
    assert hetzner.main(["create"]) == 0
    server_id = env.standin.servers[0]["id"]
    env.write(operator_cidrs=None, primary_address=None, ssh_public_key=None)  # delete needs none of them
    assert hetzner.main(["delete", "--confirm", "wirebot-standby", "--dry-run"]) == 0
    assert env.standin.servers
    assert hetzner.main(["delete", "--confirm", "wirebot-standby"]) == 0
    assert env.post_paths()[-1] == ("DELETE", f"/servers/{server_id}")
    assert env.standin.servers == [] and not env.data()["standby"]["address"]
    assert hetzner.main(["delete", "--confirm", "wirebot-standby"]) == 0
    assert "nothing to delete" in capsys.readouterr().out


STATUS = {code: status for status, code in errors.HTTP_STATUS_CODES.items()}


@pytest.mark.parametrize("code", sorted(errors.API_MESSAGES))
def test_every_documented_error_code_is_one_line_with_what_to_do(env, capsys, code):
    details = {"fields": [{"name": "name", "messages": ["is too long"]}]} if code == "invalid_input" else None
    env.standin.fail("POST", "/ssh_keys", STATUS.get(code, 422), code, times=None, details=details)
    assert hetzner.main(["create"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: uploading the SSH key 'wirebot-operator': ") and f"{code})" in err
    assert f"(X-Correlation-Id {env.standin.last_correlation_id}: quote it to Hetzner support)" in err
    assert "Hetzner API error (" not in err  # not the generic fallback
    if code == "invalid_input":
        assert "rejected the request (422 invalid_input): injected; name: is too long" in err
    assert env.standin.calls("POST", "/servers") == []


@pytest.mark.parametrize("status, code", [(401, "unauthorized"), (403, "forbidden"), (412, "resource_unavailable"),
                                          (423, "locked"), (503, "unavailable"), (504, "timeout")])
def test_error_without_a_json_body_is_named_by_its_status(status, code):
    error = APIException(code=status, message="Service Unavailable", details=None, correlation_id="abc-1")
    text = errors.describe_api_error(error)
    assert f"{code})" in text and "X-Correlation-Id abc-1" in text


def test_unknown_error_code_still_shows_code_message_and_correlation_id():
    text = errors.describe_api_error(APIException(code="brand_new", message="new thing", details=None,
                                                 correlation_id="c-9"))
    assert text == "Hetzner API error (brand_new): new thing (X-Correlation-Id c-9: quote it to Hetzner support)"


@pytest.mark.parametrize("code", errors.CAPACITY_CODES)
def test_capacity_error_on_create_lists_the_alternatives_plan_would(env, capsys, code):
    env.standin.fail("POST", "/servers", 412 if code == "resource_unavailable" else 422, code,
                     message="no capacity for cax11 in fsn1")
    assert hetzner.main(["create"]) == 3
    err = capsys.readouterr().err
    assert "creating the server 'wirebot-standby': " in err and f"{code}): no capacity" in err.split("\n")[0]
    assert "X-Correlation-Id" in err.split("\n")[0]
    assert "cax11 in nbg1 (Nuremberg DC Park 1): 4.51 EUR/month" in err
    assert "cheapest types offered in fsn1:" in err and "cx23 (x86, 2 vCPU, 4 GB RAM, 40 GB disk)" in err
    assert "not proposed" not in err  # cx22 is past its end, so not offered at all
    assert env.standin.servers == [] and len(env.standin.firewalls) == 1
    assert hetzner.main(["create"]) == 0  # capacity back: the next run finishes the job
    assert len(env.standin.servers) == 1 and len(env.standin.firewalls) == 1


def test_soon_deprecated_type_is_named_with_its_dates_and_never_proposed_silently(env, capsys):
    soon = (datetime.now(timezone.utc) + timedelta(days=60)).date().isoformat()
    env.standin.deprecate("cax11", "2026-01-15T00:00:00+00:00", f"{soon}T00:00:00+00:00")
    env.standin.deprecate("cax21", "2026-01-15T00:00:00+00:00", f"{soon}T00:00:00+00:00", location="fsn1")
    assert hetzner.main(["plan"]) == 0
    out = capsys.readouterr().out
    assert f"warning: cax11 in fsn1 is deprecated: announced 2026-01-15, unavailable after {soon}" in out
    proposed = out.split("Consider instead")[1]
    assert "cheapest types offered in fsn1:" in proposed and "cx23 (x86" in proposed
    assert "    cax21" not in proposed and "cax11 in nbg1" not in proposed
    assert f"not proposed, deprecated in fsn1: cax21 (deprecated: announced 2026-01-15, unavailable after {soon})" \
        in proposed
    env.write(server_type="cax21", location="nbg1")  # not deprecated there: no warning
    assert hetzner.main(["plan"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_past_unavailable_after_says_so(env, capsys):
    env.write(server_type="cpx11", location="ash")  # the README's old suggestion
    assert hetzner.main(["plan"]) == 3
    err = capsys.readouterr().err
    assert "server type 'cpx11' is not offered in ash (Ashburn, VA) (deprecated: announced 2025-10-16, " \
           "unavailable after 2025-12-31)" in err
    assert "cpx22 (x86, 2 vCPU, 4 GB RAM, 80 GB disk)" in err


def test_progress_is_shown_while_actions_run_and_while_hcloud_retries(env, capsys, sleeps):
    env.standin.polls_until_done = 2
    env.standin.fail("GET", "/locations", 429, "rate_limit_exceeded", times=2)
    assert hetzner.main(["create"]) == 0
    out = capsys.readouterr().out
    retries = [line for line in out.splitlines() if "Hetzner API: rate_limit_exceeded" in line]
    assert len(retries) == 2 and "retry 1 of 5 in " in retries[0] and "X-Correlation-Id" in retries[0]
    assert "  create_server (action " in out and "): running, 0% after " in out
    assert "): success, 100% after " in out
    assert sleeps.count(resources.POLL_SECONDS) >= 2


def test_rate_limit_is_retried_with_backoff(env, sleeps):
    env.standin.fail("GET", "/locations", 429, "rate_limit_exceeded", times=1)
    assert hetzner.main(["create"]) == 0
    assert len(env.standin.calls("GET", "/locations")) == 2
    assert sleeps and 1.0 <= sleeps[0] <= 60  # hcloud's backoff, before the second attempt


def test_rate_limit_retries_are_bounded_and_not_doubled(env, sleeps):
    env.standin.fail("GET", "/locations", 429, "rate_limit_exceeded", times=None)
    assert hetzner.main(["create"]) == 4
    assert len(env.standin.calls("GET", "/locations")) == 6  # hcloud's 1 + 5 retries, no loop of ours
    assert len(sleeps) == 5


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"operator_cidrs": None}, "setting hetzner_operator_cidrs (default; not set in"),
        ({"operator_cidrs": []}, "setting hetzner_operator_cidrs ('hetzner.operator_cidrs' in"),
        ({"operator_cidrs": ["0.0.0.0/0"]}, "would open SSH to the whole internet"),
        ({"operator_cidrs": ["example.org"]}, "'hetzner.operator_cidrs' in"),
        ({"primary_address": None}, "setting hetzner_primary_address (default; not set in"),
        ({"primary_address": "192.0.2.0/24"}, "is a network"),
        ({"agent_port": "http"}, "setting hetzner_agent_port ('hetzner.agent_port' in"),
        ({"ssh_public_key": "/nonexistent/key.pub"}, "no such file: /nonexistent/key.pub"),
        ({"sever_name": "x"}, "unknown setting 'hetzner.sever_name'"),
    ],
)
def test_bad_settings_are_named_before_any_api_call(env, capsys, section, expected):
    env.write(**section)
    assert hetzner.main(["create"]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(env.settings) in err
    assert env.standin.requests == []


def test_private_key_file_is_refused(env, capsys):
    env.key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    assert hetzner.main(["plan"]) == 2
    assert "is a private key" in capsys.readouterr().err and env.standin.requests == []


def test_flags_override_the_settings_file(env):
    env.write(operator_cidrs=[])
    argv = ["create", "--operator-cidr", "198.51.100.9/32", "--server-name", "wb-2", "--label", "app=wirebot",
            "--label", "role=standby", "--label", "env=test"]
    assert hetzner.main(argv) == 0
    assert env.standin.servers[0]["name"] == "wb-2"
    assert env.standin.servers[0]["labels"] == {**LABELS, "env": "test"}
    assert env.standin.firewalls[0]["rules"][0]["source_ips"] == ["198.51.100.9/32"]


def test_missing_token_is_a_settings_error(env, monkeypatch, capsys):
    monkeypatch.delenv("HCLOUD_TOKEN")
    assert hetzner.main(["plan"]) == 2
    assert "HCLOUD_TOKEN is not set" in capsys.readouterr().err and env.standin.requests == []


def test_token_never_appears_in_output(env, capsys):
    runs = [["plan"], ["create"], ["create"], ["delete", "--confirm", "wirebot-standby"]]
    assert [hetzner.main(argv) for argv in runs] == [0, 0, 0, 0]
    env.standin.token = "another"  # now every request is refused: 401
    assert hetzner.main(["create"]) == 4
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert TOKEN not in env.settings.read_text()
    assert "401 unauthorized" in captured.err


def test_runs_as_a_script(env):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tasks" / "hetzner.py"), "plan"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ), cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert "preflight: cax11 in fsn1" in result.stdout and TOKEN not in result.stdout + result.stderr
    assert env.standin.writes() == []


def test_create_keeps_the_settings_files_comments_and_layout(env):
    text = (f"# my settings\nprimary:\n  address: {PRIMARY}  # DE\nhetzner:\n  location: fsn1  # EU: cax11 is offered\n"
            f"  operator_cidrs: [{', '.join(OPERATOR_CIDRS)}]   # home, office\n  primary_address: {PRIMARY}\n"
            f"  ssh_public_key: {env.key}\n")
    env.settings.write_text(text)
    assert hetzner.main(["create"]) == 0
    ipv4 = env.standin.servers[0]["public_net"]["ipv4"]["ip"]
    assert env.settings.read_text() == text + f'standby:\n  address: "{ipv4}"\n'
    assert hetzner.main(["delete", "--confirm", "wirebot-standby"]) == 0
    assert env.settings.read_text() == text + 'standby:\n  address: ""\n'


@pytest.mark.parametrize("command, present, absent", [
    ("delete", ["--confirm", "--server-name", "--label", "--firewall-name", "--dry-run"],
     ["--server-type", "--location", "--image", "--ssh-public-key", "--ssh-key-name", "--operator-cidr",
      "--primary-address", "--agent-port"]),
    ("plan", ["--server-type", "--location", "--operator-cidr", "--agent-port"], ["--dry-run", "--confirm"]),
    ("create", ["--server-type", "--dry-run", "--primary-address"], ["--confirm"]),
])
def test_each_command_helps_with_its_own_flags_and_defaults(capsys, command, present, absent):
    with pytest.raises(SystemExit) as exit_:
        hetzner.parse_args([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    flags = {word.rstrip(",") for word in out.split() if word.startswith("--")}
    assert set(present) <= flags and not set(absent) & flags
    assert "(default: wirebot-standby)" in out
    if command != "delete":
        assert "(default: cax11)" in out and "hetzner.operator_cidrs (default: none: required)" in out


def test_system_python_without_the_venv_gets_one_line_saying_what_to_run(tmp_path):
    """`python3 tasks/hetzner.py plan` outside the virtualenv: no traceback, the set-up command instead."""
    result = subprocess.run([sys.executable, "-S", "-I", str(ROOT / "tasks" / "hetzner.py"), "plan"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "python3 -m venv .venv && .venv/bin/pip install -e ." in result.stderr
    assert "is not installed for" in result.stderr


# --- several pairs: the settings file's `pairs:` form (tasks/hetzner_cloud/config.py's rule) -----------

ACME_PRIMARY = "198.51.100.10"
HETZNER = "hetzner: {location: fsn1, operator_cidrs: [198.51.100.7/32], ssh_public_key: KEY}\n"
FLOW_PAIRS = """\
pairs:
  wirebot:
    primary: {address: 192.0.2.10}
    standby: {}
  acme:   # a client
    primary: {address: 198.51.100.10}
    standby: {ssh_user: root}
ACME_HETZNER"""
BLOCK_PAIRS = """\
# hand-written
pairs:
    wirebot:
        primary:
            address: 192.0.2.10
        standby:
            address: ""   # written by create
    acme:
        primary:
            address: 198.51.100.10   # the client's primary
        standby:
            ssh_user: root
ACME_HETZNER"""


def write_pairs(env, text, acme_hetzner="", top=HETZNER):
    indent = "        " if text is BLOCK_PAIRS else "    "
    other = env.key.parent / "other.pub"
    other.write_text(OTHER_KEY + "\n")
    own = f"{indent}hetzner: {acme_hetzner.replace('OTHERKEY', str(other))}\n" if acme_hetzner else ""
    env.settings.write_text(text.replace("ACME_HETZNER", own) + top.replace("KEY", str(env.key)))


def by_name(items):
    return {item["name"]: item for item in items}


@pytest.mark.parametrize("layout", [FLOW_PAIRS, BLOCK_PAIRS])
def test_each_pair_gets_its_own_server_firewall_and_records_its_own_address(env, capsys, layout):
    write_pairs(env, layout)
    before = env.settings.read_text()
    assert hetzner.main(["create", "--pair", "acme"]) == 0
    assert hetzner.main(["create", "--pair", "wirebot"]) == 0
    servers, firewalls = by_name(env.standin.servers), by_name(env.standin.firewalls)
    assert set(servers) == {"wirebot-standby", "wirebot-standby-acme"}  # the default pair keeps its names
    assert set(firewalls) == {"wirebot-standby", "wirebot-standby-acme"}
    assert servers["wirebot-standby-acme"]["labels"] == {**LABELS, "wirebot-pair": "acme"}
    assert servers["wirebot-standby"]["labels"] == LABELS
    assert firewalls["wirebot-standby-acme"]["labels"] == {**LABELS, "wirebot-pair": "acme"}
    # each standby admits its own pair's primary only
    assert firewalls["wirebot-standby-acme"]["rules"][1]["source_ips"] == [f"{ACME_PRIMARY}/32"]
    assert firewalls["wirebot-standby"]["rules"][1]["source_ips"] == [f"{PRIMARY}/32"]
    assert [k["name"] for k in env.standin.ssh_keys] == ["wirebot-operator-acme"]  # one key, found by fingerprint
    pairs = env.data()["pairs"]
    assert pairs["acme"]["standby"] == {"address": servers["wirebot-standby-acme"]["public_net"]["ipv4"]["ip"],
                                        "ssh_user": "root"}
    assert pairs["wirebot"]["standby"]["address"] == servers["wirebot-standby"]["public_net"]["ipv4"]["ip"]
    after = env.settings.read_text()
    assert len(after.splitlines()) - len(before.splitlines()) in (0, 1, 2)  # only address lines changed or added
    assert [line for line in before.splitlines() if line not in after.splitlines()] in (
        [], ['            address: ""   # written by create'], ["    standby: {}", "    standby: {ssh_user: root}"])
    assert "recorded pairs.acme.standby.address = " in capsys.readouterr().out
    writes = len(env.standin.writes())
    assert hetzner.main(["create", "--pair", "acme"]) == 0 and len(env.standin.writes()) == writes  # idempotent

    # delete acme: only acme's server goes, only acme's address is cleared
    assert hetzner.main(["delete", "--pair", "acme", "--confirm", "wirebot-standby"]) == 5  # wirebot's name
    assert hetzner.main(["delete", "--pair", "acme", "--confirm", "wirebot-standby-acme"]) == 0
    assert set(by_name(env.standin.servers)) == {"wirebot-standby"}
    pairs = env.data()["pairs"]
    assert pairs["acme"]["standby"]["address"] == "" and pairs["wirebot"]["standby"]["address"]


def test_a_pairs_own_hetzner_mapping_names_its_resources(env, tmp_path, capsys):
    other = tmp_path / "other.pub"
    other.write_text(OTHER_KEY + "\n")
    write_pairs(env, FLOW_PAIRS, "{server_name: acme-standby, firewall_name: acme-fw, ssh_key_name: acme-key, "
                                 f"ssh_public_key: {other}, location: nbg1, labels: {{app: acme, role: standby}}}}")
    assert hetzner.main(["create", "--pair", "acme"]) == 0
    server, = env.standin.servers
    assert server["name"] == "acme-standby" and server["labels"] == {"app": "acme", "role": "standby",
                                                                     "wirebot-pair": "acme"}
    assert env.standin.firewalls[0]["name"] == "acme-fw"
    assert [(k["name"], k["fingerprint"]) for k in env.standin.ssh_keys] == [("acme-key", OTHER_MD5)]
    assert "cax11 in nbg1" in capsys.readouterr().out


@pytest.mark.parametrize("acme_hetzner, top, expected", [
    ("{server_name: wirebot-standby}", HETZNER, "pairs 'acme' and 'wirebot' both resolve to the server name "
                                                "'wirebot-standby'"),
    ("{firewall_name: wirebot-standby}", HETZNER, "both resolve to the firewall name 'wirebot-standby'"),
    ("{ssh_key_name: wirebot-operator, ssh_public_key: OTHERKEY}", HETZNER,
     "pairs 'acme' and 'wirebot' would upload different public keys under the SSH key name 'wirebot-operator'"),
    ("", HETZNER.replace("location", "primary_address: 192.0.2.10, location"), "'hetzner.primary_address' beside "
                                                                                "'pairs:': whose primary?"),
    ("{labels: {app: wirebot, wirebot-pair: wirebot}}", HETZNER, "wirebot-pair=wirebot names another pair than "
                                                                 "'acme'"),
    ("{sever_name: x}", HETZNER, "unknown setting 'pairs.acme.hetzner.sever_name'"),
    ("[x]", HETZNER, "'pairs.acme.hetzner' must be a mapping"),
])
@pytest.mark.parametrize("pair", ["wirebot", "acme"])
def test_pairs_that_would_share_a_resource_are_refused_before_any_api_call(env, capsys, acme_hetzner, top,
                                                                            expected, pair):
    """Any pair's bad or clashing settings stop the command for every pair of the file (delete too)."""
    write_pairs(env, FLOW_PAIRS, acme_hetzner, top)
    assert hetzner.main(["create", "--pair", pair]) == 2
    assert expected in capsys.readouterr().err
    assert hetzner.main(["delete", "--pair", pair, "--confirm", "x"]) == 2
    assert env.standin.requests == []


@pytest.mark.parametrize("names", [["wirebot", "acme"], ["acme", "acme_2", "b"], ["a_b", "a", "b"],
                                   ["wirebot", "wirebot_standby", "standby_2"]])
def test_woven_names_never_collide(env, names):
    text = "pairs:\n" + "".join(f"  {n}: {{primary: {{address: 192.0.2.{i + 1}}}, standby: {{}}}}\n"
                                for i, n in enumerate(names))
    env.settings.write_text(text + HETZNER.replace("KEY", str(env.key)))
    specs = [config.resolve(hetzner.DEFAULTS, {}, pair=n) for n in names]
    for attribute in ("name", "firewall_name", "key_name", "primary_cidr"):
        assert len({getattr(spec, attribute) for spec in specs}) == len(names), attribute
    assert len({spec.labels.get("wirebot-pair") for spec in specs}) == len(names)


@pytest.mark.parametrize("settings, argv, code, expected", [
    ("several", ["create"], 2, "has 2 pairs (acme, wirebot): name the one for the Hetzner command (--pair NAME)"),
    ("several", ["delete", "--confirm", "wirebot-standby"], 2, "has 2 pairs (acme, wirebot)"),
    ("several", ["plan", "--pair", "acne"], 2, "no pair 'acne' in"),
    ("several", ["delete", "--pair", "zeta", "--confirm", "x"], 2, "its pairs are acme, wirebot"),
    ("one-pair", ["plan", "--pair", "acme"], 2, "one-pair form, whose pair is wirebot"),
    ("one-pair", ["plan", "--pair", "wirebot"], 0, ""),
    ("single", ["plan"], 0, ""),
])
def test_pair_is_required_with_several_and_an_unknown_one_is_refused_before_any_api_call(
        env, capsys, settings, argv, code, expected):
    if settings == "several":
        write_pairs(env, FLOW_PAIRS)
    elif settings == "single":
        write_pairs(env, "pairs:\n  acme:\n    primary: {address: 198.51.100.10}\n    standby: {}\nACME_HETZNER")
    assert hetzner.main(argv) == code
    assert expected in capsys.readouterr().err
    if code:
        assert env.standin.requests == []


@pytest.mark.parametrize("other_settings", [
    "hetzner: {server_name: wirebot-standby-acme}\n",  # the one-pair form, naming acme's server
    "pairs:\n  zeta:\n    primary: {address: 192.0.2.99}\n    standby: {}\n    hetzner: {server_name: "
    "wirebot-standby-acme, firewall_name: wirebot-standby-acme, labels: {app: wirebot, role: standby}}\n",
    "pairs:\n  wirebot:\n    primary: {address: 192.0.2.99}\n    standby: {}\n    hetzner: {server_name: "
    "wirebot-standby-acme}\n",
])
def test_delete_never_touches_another_pairs_server(env, capsys, other_settings):
    write_pairs(env, FLOW_PAIRS)
    assert hetzner.main(["create", "--pair", "acme"]) == 0
    env.settings.write_text(other_settings)  # another settings file naming acme's server as its own
    assert hetzner.main(["delete", "--confirm", "wirebot-standby-acme"]) == 5
    assert "exists (id" in capsys.readouterr().err
    assert [s["name"] for s in env.standin.servers] == ["wirebot-standby-acme"]
    assert env.standin.calls("DELETE", f"/servers/{env.standin.servers[0]['id']}") == []
