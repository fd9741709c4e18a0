"""wirebot.common.cloudflare: the one client of Cloudflare's tunnel-connections API, against a loopback server
(what every caller gets: origins, or an error with the HTTP status and Retry-After; never a raise, never the
token in a result, never an unreadable answer read as "no connector")."""

import time

import pytest
from wirebot.common import cloudflare

from .. import agenttest

TOKEN = "cf-secret-token"
PATH = "/client/v4/accounts/acct/cfd_tunnel/tun/connections"


@pytest.fixture
def api(http_server):
    server = http_server()
    server.set(PATH, 200, agenttest.cloudflare_envelope())
    return server


def call(api, token=TOKEN, account="acct", tunnel="tun", timeout=2.0):
    return cloudflare.tunnel_origins(api.url("/client/v4/"), account, tunnel, token, timeout)


def test_origins_are_listed_once_each_sorted_with_the_bearer_token(api):
    api.set(PATH, 200, agenttest.cloudflare_envelope("10.0.0.3", "10.0.0.2", "10.0.0.3"))
    result = call(api)
    assert result == {"configured": True, "ok": True, "origins": ["10.0.0.2", "10.0.0.3"], "error": None,
                      "status": 200, "retry_after": None}
    method, path, headers = api.requests[-1]
    assert (method, path) == ("GET", PATH) and headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("token, account, tunnel", [(None, "acct", "tun"), ("", "acct", "tun"),
                                                    (TOKEN, None, "tun"), (TOKEN, "acct", "")])
def test_not_configured_sends_nothing(api, token, account, tunnel):
    result = call(api, token, account, tunnel)
    assert result["configured"] is False and not result["ok"] and api.requests == []


def test_account_and_tunnel_are_one_path_segment_each():
    url = cloudflare.connections_url("https://api.example/client/v4/", "a/../b", "t?x=1")
    assert url == "https://api.example/client/v4/accounts/a%2F..%2Fb/cfd_tunnel/t%3Fx%3D1/connections"


@pytest.mark.parametrize("status, body, headers, retry_after", [
    (429, {"success": False}, {"Retry-After": "7"}, 7.0),
    (503, "down", {"Retry-After": "2.5"}, 2.5),
    (429, {}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),  # an HTTP date: not honoured
    (429, {}, {"Retry-After": "999999"}, None),                          # beyond a day: garbage
    (403, {"success": False, "errors": [{"code": 10000}]}, {}, None),
])
def test_a_refusal_gives_its_status_and_retry_after(api, status, body, headers, retry_after):
    api.answers[PATH] = (status, body, headers)
    result = call(api)
    assert not result["ok"] and result["origins"] == [] and result["status"] == status
    assert result["error"] == f"HTTP {status}" and result["retry_after"] == retry_after


@pytest.mark.parametrize("body, error", [
    ({"success": False, "errors": [{"code": 1003, "message": "bad"}], "result": None}, "not successful"),
    ({"success": True, "result": {"not": "a list"}}, "not a list"),
    ("<html>gateway</html>", "Expecting value"),
    ([1, 2], "not successful"),
])
def test_an_unreadable_answer_is_an_error_never_an_empty_list(api, body, error):
    api.set(PATH, 200, body)
    result = call(api)
    assert not result["ok"] and result["origins"] == [] and error in result["error"]


def test_a_silent_api_is_bounded_by_the_timeout(api):
    api.answers[PATH] = lambda handler: (time.sleep(1.5), (200, agenttest.cloudflare_envelope("10.0.0.2")))[1]
    started = time.monotonic()
    result = call(api, timeout=0.3)
    assert time.monotonic() - started < 1.2 and not result["ok"] and "timed out" in result["error"]


def test_unreachable_is_an_error(api):
    port = agenttest.free_port()
    result = cloudflare.tunnel_origins(f"http://127.0.0.1:{port}/client/v4", "acct", "tun", TOKEN, 1.0)
    assert result["configured"] and not result["ok"] and result["error"] and result["status"] is None


def test_the_token_never_appears_in_a_result(api):
    for answer in ((401, {"errors": [TOKEN]}, {}), (200, "not json " + TOKEN),
                   (200, agenttest.cloudflare_envelope("10.0.0.9"))):
        api.answers[PATH] = answer
        assert TOKEN not in repr(call(api))
