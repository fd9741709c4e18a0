"""files/prometheus: the alert rules pass `promtool check rules` and their unit tests (`promtool test
rules`), the scrape jobs pass `promtool check config`, and every metric the rules use is one the agents
export (with its HELP). promtool is Debian's `prometheus` package (lab/deploy.sh installs it)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "files" / "prometheus" / "wirebot-rules.yml"
SCRAPE = ROOT / "files" / "prometheus" / "scrape.yml"
RULE_TESTS = sorted((ROOT / "tests" / "unit" / "prometheus").glob("*.test.yml"))
sys.path.insert(0, str(ROOT / "files" / "agents"))

from wirebot import replicator, standby_api  # noqa: E402


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


def test_scrape_config_is_valid_with_the_rules(promtool, tmp_path):
    config = {"global": {"scrape_interval": "30s"}, "rule_files": [str(RULES)],
              "scrape_configs": yaml.safe_load(SCRAPE.read_text())["scrape_configs"]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert "is valid prometheus config file syntax" in run(promtool, "check", "config", str(path))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"wirebot-replicator", "wirebot-standby"}
    assert "tls_config" in SCRAPE.read_text()  # the placeholder for the agents' mutual TLS


def test_rules_use_only_exported_metrics():
    exported = {f"wirebot_replicator_{name}" for name in replicator.METRICS_HELP}
    exported |= {f"wirebot_standby_{name}" for name in standby_api.METRICS_HELP}
    used = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"\b(wirebot_[a-z_]+)", rule["expr"]))
    assert used and used <= exported, used - exported
