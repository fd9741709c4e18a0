"""wirebot.standby.witness: public endpoint and Cloudflare tunnel-connections checks against loopback servers."""

import pytest
from wirebot.common.config import ConfigError
from wirebot.standby import witness

from .. import agenttest

TOKEN = "cf-token"


@pytest.fixture
def edge(http_server):
    server = http_server()
    server.set("/health", 530, "error code: 1033")
    server.set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", 200, agenttest.cloudflare_envelope())
    return server


def settings(edge, **over):
    data = {"public_url": edge.url("/health"), "public_host_header": "wins.example.test",
            "cloudflare_api_base": edge.url("/client/v4"), "account_id": "acct", "tunnel_id": "tun",
            "self_origin_ip": "10.213.0.3", "timeout_seconds": 2.0}
    data.update(over)
    return data


def test_public_2xx_means_serving_and_sends_host_header(edge):
    edge.set("/health", 200, {"ok": True})
    result = witness.check(settings(edge), None, now=5.0)
    assert result["primary_serving"] and result["public"]["status"] == 200 and result["at"] == 5.0
    assert edge.requests[0][2]["Host"] == "wins.example.test"
    assert "public answered 200" in result["summary"]


@pytest.mark.parametrize("status", [502, 530, 404])
def test_public_non_2xx_is_not_serving(edge, status):
    edge.set("/health", status, "x")
    assert not witness.check(settings(edge), None)["primary_serving"]


def test_public_unreachable_is_not_serving(edge):
    port = agenttest.free_port()
    result = witness.check(settings(edge, public_url=f"http://127.0.0.1:{port}/"), None)
    assert not result["primary_serving"] and result["public"]["error"]
    assert "public unreachable" in result["summary"]


def test_api_not_configured_without_token(edge):
    result = witness.check(settings(edge), None)
    assert result["api"]["configured"] is False and not result["api_clear"] and not result["other_connector"]
    assert not any("/client/v4" in r[1] for r in edge.requests)


def test_api_clear_when_only_our_origin(edge):
    edge.set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", 200, agenttest.cloudflare_envelope("10.213.0.3"))
    result = witness.check(settings(edge), TOKEN)
    assert result["api_clear"] and not result["other_connector"]
    api_request = [r for r in edge.requests if "/client/v4" in r[1]][0]
    assert api_request[2]["Authorization"] == "Bearer " + TOKEN


def test_api_other_origin_attached(edge):
    edge.set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", 200,
             agenttest.cloudflare_envelope("10.213.0.2", "10.213.0.3", "10.213.0.2"))
    result = witness.check(settings(edge), TOKEN)
    assert result["other_connector"] and result["api"]["other_origins"] == ["10.213.0.2"]
    assert "connections from 10.213.0.2" in result["summary"]


@pytest.mark.parametrize("status,body", [
    (403, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}], "result": None}),
    (200, {"success": False, "errors": [{"code": 1003}], "result": None}),
    (200, {"success": True, "result": "nope"}),
    (200, "not json"),
])
def test_api_errors_are_neither_clear_nor_attached(edge, status, body):
    edge.set("/client/v4/accounts/acct/cfd_tunnel/tun/connections", status, body)
    result = witness.check(settings(edge), TOKEN)
    assert result["api"]["configured"] and not result["api"]["ok"] and result["api"]["error"]
    assert not result["api_clear"] and not result["other_connector"]
    assert "API check failed" in result["summary"]


def test_load_settings_defaults_and_errors(tmp_path):
    cfg = {"witness": {"public_url": "https://x/health", "self_origin_ip": "1.2.3.4"}}
    s = witness.load_settings(cfg, "f.yml")
    assert s["cloudflare_api_base"] == witness.DEFAULT_API_BASE and s["timeout_seconds"] == 5.0
    assert s["account_id"] is None
    assert witness.load_settings({}, "f.yml", required=False) is None
    with pytest.raises(ConfigError) as info:
        witness.load_settings({"witness": {"public_url": "x"}}, "/etc/wirebot/standby.yml")
    assert str(info.value) == "/etc/wirebot/standby.yml: witness.self_origin_ip is required"
    with pytest.raises(ConfigError) as info:
        witness.load_settings({}, "s.yml")
    assert "witness is required" in str(info.value)
