"""tasks/core/ops: the agents' channel operations' commands and fact, run for real in a temp dir
(what the deploy runs on each host: a TLS key and self-signed certificate, a control key, the peer's pin)."""

import os
import ssl
import stat
import subprocess

import pytest

from tasks.core.ops import Certificate, _put_text_command, random_key_command, tls_keypair_command


def _sh(command):
    subprocess.run(["sh", "-c", command], check=True)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys") / "agent-keys"
    key, cert = str(folder / "agent.key"), str(folder / "agent.crt")
    _sh(tls_keypair_command(key, cert, "wirebot-primary"))
    return folder, key, cert


def test_the_key_is_private_and_the_certificate_public(pair):
    folder, key, cert = pair
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cert).st_mode) == 0o644
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_the_certificate_is_a_leaf_for_client_and_server_that_python_ssl_loads(pair):
    _, key, cert = pair
    text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout
    assert "CA:FALSE" in text and "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text
    assert "CN = wirebot-primary" in text and "prime256v1" in text
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cert)


def test_each_run_makes_a_different_key(pair, tmp_path):
    _, _, cert = pair
    other_key, other_cert = str(tmp_path / "k"), str(tmp_path / "c")
    _sh(tls_keypair_command(other_key, other_cert, "wirebot-primary"))
    assert open(other_cert).read() != open(cert).read()


def test_certificate_fact_reads_only_certificates(pair):
    _, key, cert = pair
    text = open(cert).read()
    assert Certificate().process(text.splitlines()) == text
    assert Certificate().process([]) is None
    assert Certificate().process(open(key).read().splitlines()) is None  # a key is not a certificate
    assert "cat /etc/x/peer.crt" in Certificate().command("/etc/x/peer.crt")


def test_the_pin_is_written_whole_and_public(pair, tmp_path):
    _, _, cert = pair
    text = open(cert).read()
    dest = str(tmp_path / "pins" / "peer.crt")
    _sh(_put_text_command(dest, text))
    assert open(dest).read() == text and stat.S_IMODE(os.stat(dest).st_mode) == 0o644


def test_the_control_key_is_random_hex_and_private(tmp_path):
    from wirebot.common import signing

    paths = [str(tmp_path / "a" / "control.key"), str(tmp_path / "b" / "control.key")]
    for path in paths:
        _sh(random_key_command(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keys = [signing.load_key(path) for path in paths]  # the agents accept it (hex, 32 bytes)
    assert len(keys[0]) == 32 and keys[0] != keys[1]


def test_the_certificate_names_itself_for_prometheus_and_an_old_one_is_recognised(pair, tmp_path):
    """New certificates carry their common name as DNS subjectAltName (Go checks only SANs); one made
    without it (before) is recognised, so the trust deploy can warn that Prometheus will refuse it."""
    from tasks.core.secrets import dns_names

    _, _, cert = pair
    with open(cert) as handle:
        assert dns_names(handle.read()) == {"wirebot-primary"}
    old_key, old_cert = str(tmp_path / "old.key"), str(tmp_path / "old.crt")
    without_name = tls_keypair_command(old_key, old_cert, "wirebot-primary")
    _sh(without_name.replace("-addext subjectAltName=DNS:wirebot-primary ", ""))
    with open(old_cert) as handle:
        assert dns_names(handle.read()) == set()
    assert dns_names("-----BEGIN CERTIFICATE-----\nFAKE\n-----END CERTIFICATE-----") is None
