"""files/prometheus: the alert rules pass `promtool check rules` and their unit tests (`promtool test
rules`), the scrape jobs pass `promtool check config`, and every metric the rules use is one the agents
export (with its HELP). promtool is Debian's `prometheus` package (lab/deploy.sh installs it)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from wirebot.primary import replicator
from wirebot.standby import api as standby_api

from lab import prometheus as lab_prometheus
from lab.loopback import free_port

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "files" / "prometheus" / "wirebot-rules.yml"
SCRAPE = ROOT / "files" / "prometheus" / "scrape.yml"
RULE_TESTS = sorted((ROOT / "tests" / "unit" / "prometheus").glob("*.test.yml"))


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (lab/deploy.sh does)")
    return path


def run(*argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_are_valid(promtool):
    assert "SUCCESS: 9 rules found" in run(promtool, "check", "rules", str(RULES))


def test_rules_fire_when_they_should_and_only_then(promtool):
    output = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert len(RULE_TESTS) == 2 and output.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_a_unit_test():
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    tested = {case["alertname"] for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == tested


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A folder as the operator fills /etc/prometheus/wirebot: the agents' certificates made with the deploy's
    own command (primary-agent.crt, standby-agent.crt, with their keys) and Prometheus' pair made with the
    documented command (client.crt, client.key)."""
    from tasks.core.ops import tls_keypair_command
    from tasks.core.secrets import MAKE_METRICS_READER_CERT

    folder = tmp_path_factory.mktemp("prometheus-wirebot")
    for role in ("primary", "standby"):
        subprocess.run(["sh", "-c", tls_keypair_command(str(folder / f"{role}-agent.key"),
                                                        str(folder / f"{role}-agent.crt"), f"wirebot-{role}")],
                       check=True)
    subprocess.run(["sh", "-c", f"{MAKE_METRICS_READER_CERT} 2>/dev/null"], cwd=folder, check=True)
    return folder


def test_scrape_config_is_valid_with_the_rules(promtool, tmp_path, certs):
    shipped = SCRAPE.read_text().replace("/etc/prometheus/wirebot/", f"{certs}/")  # promtool opens them
    config = {"global": {"scrape_interval": "30s"}, "rule_files": [str(RULES)],
              "scrape_configs": yaml.safe_load(shipped)["scrape_configs"]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert "is valid prometheus config file syntax" in run(promtool, "check", "config", str(path))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"wirebot-replicator", "wirebot-standby"}
    for job in config["scrape_configs"]:  # mutual TLS, the one pinned agent certificate, its name checked
        tls = job["tls_config"]
        assert job["scheme"] == "https" and not tls.get("insecure_skip_verify")
        assert {"ca_file", "cert_file", "key_file", "server_name"} <= set(tls)



def test_the_shipped_jobs_scrape_an_agent_through_gos_tls(tmp_path, certs):
    """The real Prometheus with the shipped wirebot-replicator job (only the target and file paths replaced)
    scrapes an agent listener made by wirebot.common.channel with the deploy's own certificate command and the
    operator's documented client-certificate command; the same job refuses a server with another name,
    and the agent serves nothing to a client without the pinned certificate."""
    from wirebot.common import channel

    from tasks.core.secrets import metrics_reader_cert

    (tmp_path / "secrets" / "prometheus").mkdir(parents=True)
    (tmp_path / "secrets" / "prometheus" / "client.crt").write_text((certs / "client.crt").read_text())
    assert metrics_reader_cert(str(tmp_path / "secrets"), required=True)
    (tmp_path / "control.key").write_text("ab" * 32 + "\n")
    settings = channel.load_settings({
        "tls": {"cert_file": str(certs / "primary-agent.crt"), "key_file": str(certs / "primary-agent.key"),
                "peer_cert_file": str(certs / "standby-agent.crt")},
        "control": {"socket": str(tmp_path / "run" / "control.sock")},
        "secrets": {"control_key_file": str(tmp_path / "control.key")},
        "metrics": {"sources": ["127.0.0.1"], "cert_file": str(certs / "client.crt")}}, "replicator.yml")
    text = "# HELP wirebot_replicator_up 1\n# TYPE wirebot_replicator_up gauge\nwirebot_replicator_up 1\n"
    routes = {("GET", "/metrics"): lambda r: (200, text), ("GET", "/status"): lambda r: (200, {"secret": 1})}
    servers = channel.serve(settings, "127.0.0.1", 0, routes, {}, ["127.0.0.9"], "test")
    try:
        shipped = next(j for j in yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
                       if j["job_name"] == "wirebot-replicator")
        target = f"127.0.0.1:{servers[0].server_address[1]}"
        def job(name, **tls):
            paths = {key: value.replace("/etc/prometheus/wirebot/", f"{certs}/")
                     for key, value in shipped["tls_config"].items()}
            return dict(shipped, job_name=name, scrape_interval="1s", scrape_timeout="1s",
                        static_configs=[{"targets": [target]}], tls_config=dict(paths, **tls))

        seen = lab_prometheus.scrape_once([
            job("shipped"), job("wrong-name", server_name="wirebot-standby"),
            dict(job("status-path"), metrics_path="/status"),
            job("no-pin", ca_file=str(certs / "standby-agent.crt"))], tmp_path, f"127.0.0.1:{free_port()}")
    finally:
        channel.stop(servers)
    assert seen["shipped"] == ("up", ""), seen
    assert seen["wrong-name"][0] == "down" and "wirebot-standby" in seen["wrong-name"][1], seen
    assert seen["status-path"][0] == "down" and "404" in seen["status-path"][1], seen
    assert seen["no-pin"][0] == "down" and "certificate" in seen["no-pin"][1], seen


def test_rules_use_only_exported_metrics():
    exported = {f"wirebot_replicator_{name}" for name in replicator.METRICS_HELP}
    exported |= {f"wirebot_standby_{name}" for name in standby_api.METRICS_HELP}
    used = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"\b(wirebot_[a-z_]+)", rule["expr"]))
    assert used and used <= exported, used - exported
