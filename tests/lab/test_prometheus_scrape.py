"""Prometheus scrapes the agents over the channel (docs/operator.md "Prometheus"): the lab inventory names the
monitor namespace as the metrics source and lab/secrets.py made Prometheus' pair with the operator's
documented command. From the monitor's namespace, with that certificate, both agents answer GET /metrics
(Prometheus text) and nothing else; without it, or with it from another address, the connection is
refused; from the edge nothing connects at all; and the real Prometheus with the shipped scrape jobs
scrapes both from the monitor. About 10 s."""

import base64
import re
from pathlib import Path

import pytest
import yaml

from lab import prometheus as lab_prometheus
from lab import secrets, settings
from lab.agents import agent
from lab.channel_attacker import identity, probe, stranger_identity
from lab.commands import ROOT
from lab.machines import ssh

AGENTS = {"primary": f"{settings.address('primary')}:8300", "standby": f"{settings.address('standby')}:8300"}
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$')


@pytest.fixture(scope="module")
def reader():
    """{role: the TLS spec Prometheus uses for that agent}: its own pair and the agent's pinned certificate,
    fetched as the operator does (cat /etc/wirebot/agent-keys/agent.crt over SSH)."""
    pair = secrets.prometheus_client()
    folder = settings.STATE_DIR / "test-identities" / "prometheus"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    specs = {}
    for role in AGENTS:
        pin = folder / f"{role}-agent.crt"
        pin.write_text(ssh(role, "cat /etc/wirebot/agent-keys/agent.crt").stdout)
        specs[role] = dict(pair, peer_cert_file=str(pin))
    return specs


def _ask(where, role, tls, method="GET", path="/metrics"):
    request = f"{method} {path} HTTP/1.1\r\nHost: wirebot-{role}\r\nContent-Length: 0\r\n\r\n".encode()
    return probe(where, {"mode": "send", "probes": [{"target": AGENTS[role], "tls": tls, "wait": 3,
                                                     "payload": base64.b64encode(request).decode(),
                                                     "answer_bytes": 1 << 20}]})["results"][0]


def parse_exposition(text):
    """{metric name: [sample lines]} of Prometheus' text format; every sample line well-formed and every
    metric with its HELP and TYPE before its samples (an AssertionError names the line otherwise)."""
    helps, types, samples = set(), set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            assert line.split()[3] in ("gauge", "counter", "untyped", "histogram", "summary"), line
            types.add(line.split()[2])
        elif line.strip():
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match.group(1)
            assert name in helps and name in types, f"{name}: samples before HELP and TYPE"
            samples.setdefault(name, []).append(line)
    return samples


def test_prometheus_scrapes_both_agents_from_its_address_and_reads_nothing_else(reader):
    status_before = agent("standby", "/status")[1]
    for role, tls in reader.items():
        answer = _ask("monitor", role, tls)
        assert answer["status"] == 200, (role, answer)
        head, _, body = answer["answer"].partition("\r\n\r\n")
        assert "text/plain; version=0.0.4" in head
        samples = parse_exposition(body)
        assert any(name.startswith(f"wirebot_{'replicator' if role == 'primary' else 'standby'}_")
                   for name in samples), (role, sorted(samples))
        for method, path, code in (("GET", "/status", 404), ("GET", "/health", 404), ("POST", "/heartbeat", 404),
                                   ("POST", "/activate", 404), ("POST", "/metrics", 405)):
            assert _ask("monitor", role, tls, method, path)["status"] == code, (role, method, path)
    status_after = agent("standby", "/status")[1]
    for key in ("state", "epoch"):
        assert status_after[key] == status_before[key]


def test_without_the_certificate_or_from_another_address_nothing_answers(reader):
    refused = agent("standby", "/status")[1]["connections"]["peer"]
    for role, tls in reader.items():
        pin = {"peer_cert_file": tls["peer_cert_file"]}
        for where, spec in (("monitor", dict(pin, no_client_cert=True)),    # no client certificate
                            ("monitor", dict(stranger_identity(), **pin)),   # a certificate pinned nowhere
                            ("monitor", dict(identity("primary" if role == "standby" else "standby"),
                                             **pin)),                        # the stolen peer's, from the monitor
                            ("primary" if role == "standby" else "standby", tls),  # Prometheus', from the peer
                            ("monitor", None),                               # plain HTTP
                            ("edge", tls)):                                  # Prometheus' from the edge
            answer = _ask(where, role, spec)
            assert answer["status"] == 0 and "HTTP/" not in answer["answer"], (role, where, spec, answer)
    after = agent("standby", "/status")[1]["connections"]["peer"]
    # at the standby: the stolen primary certificate from the monitor, Prometheus' from the primary (the
    # edge's attempt never reaches the agent: the firewall drops it)
    assert after["refused_identity"] - refused["refused_identity"] == 2
    assert after["tls_failed"] - refused["tls_failed"] >= 3


def test_the_shipped_scrape_jobs_scrape_both_agents_from_the_monitor(reader, tmp_path):
    """The real Prometheus in the monitor's namespace with files/prometheus/scrape.yml as the operator sets it
    up (addresses replaced, /etc/prometheus/wirebot/ = the lab's copies): both jobs up, through Go's TLS
    with the agents' names as server_name."""
    folder = tmp_path / "wirebot"
    folder.mkdir()
    pair = secrets.prometheus_client()
    for name, source in (("client.crt", pair["cert_file"]), ("client.key", pair["key_file"]),
                         ("primary-agent.crt", reader["primary"]["peer_cert_file"]),
                         ("standby-agent.crt", reader["standby"]["peer_cert_file"])):
        (folder / name).write_text(Path(source).read_text())
    shipped = (ROOT / "files" / "prometheus" / "scrape.yml").read_text().replace(
        "/etc/prometheus/wirebot/", f"{folder}/").replace("PRIMARY_ADDRESS", settings.address("primary")).replace(
        "STANDBY_ADDRESS", settings.address("standby"))
    jobs = [dict(job, scrape_interval="1s", scrape_timeout="1s") for job in yaml.safe_load(shipped)["scrape_configs"]]
    seen = lab_prometheus.scrape_once(jobs, tmp_path, f"{settings.address('monitor')}:9390",
                                      prefix=["ip", "netns", "exec", settings.netns("monitor")])
    assert seen == {"wirebot-replicator": ("up", ""), "wirebot-standby": ("up", "")}, seen
