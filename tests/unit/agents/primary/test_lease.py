"""wirebot.primary.lease: the primary's renewals, self-demotion and lapse (nft and the fence are fakes here)."""

import pytest
from wirebot.primary import lease


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def keeper(tmp_path, fake_systemctl):
    clock, scripts, fences = Clock(), [], []

    def nft(_binary, script):
        scripts.append(script)
        return True, ""

    def fence(reason):
        fences.append(reason)
        (tmp_path / "fenced.json").write_text("{}")
        return 0, {"fenced": True}

    settings = {"enabled": True, "seconds": 2.0, "units": ["cloudflared-wirebot", "openclaw-gateway"],
                "fenced_file": str(tmp_path / "fenced.json"), "nft": "nft", "systemctl": fake_systemctl.path}
    k = lease.Keeper(settings, lambda: 1, clock=clock, nft=nft, fence=fence)
    k.scripts, k.fences, k.clk, k.fake = scripts, fences, clock, fake_systemctl
    return k


def answer(state="STANDBY", epoch=1, granted=True, ok=True):
    return {"ok": ok, "response": {"ok": True, "state": state, "epoch": epoch, "lease": {"granted": granted}}}


def test_a_granted_heartbeat_renews_counting_from_the_send(keeper):
    keeper.clk.now = 100.5
    keeper.on_answer(answer(), sent_at=100.0)
    assert keeper.state == "held" and keeper.expires_at == 102.0
    assert "add element inet wirebot lease { ipv4 timeout 1500ms, ipv6 timeout 1500ms }" in keeper.scripts[-1]
    assert keeper.payload() == {"lease": {"enforced": True, "seconds": 2.0}, "serving": None}  # no ready_url


def test_serving_is_false_only_when_the_connector_runs_but_is_not_ready(keeper, http_server, tmp_path):
    ready = http_server()
    ready.set("/ready", 503, {"ready": False})
    keeper.s["ready_url"] = ready.url("/ready")
    assert keeper.serving() is None  # the connector is not running: not meant to serve
    keeper.fake.set_state("cloudflared-wirebot", "active")
    assert keeper.serving() is False  # running, cut from the edge
    ready.set("/ready", 200, {"ready": True})
    assert keeper.serving() is True
    (tmp_path / "fenced.json").write_text("{}")
    assert keeper.serving() is None


@pytest.mark.parametrize("result", [answer(granted=False), answer(ok=False)])
def test_no_grant_no_renewal(keeper, result):
    keeper.on_answer(result, sent_at=100.0)
    assert keeper.scripts == [] and keeper.state == "none"


def test_an_answer_older_than_the_lease_renews_nothing(keeper):
    keeper.clk.now = 103.0
    keeper.on_answer(answer(), sent_at=100.0)
    assert keeper.scripts == [] and keeper.state == "none"


@pytest.mark.parametrize("result", [answer("ACTIVE", granted=False), answer("ACTIVATING", granted=False),
                                    answer("STANDBY", epoch=2)])
def test_a_serving_standby_or_a_newer_epoch_demotes_at_once(keeper, result):
    keeper.on_answer(answer(), sent_at=100.0)
    keeper.on_answer(result, sent_at=100.5)
    assert keeper.state == "demoted" and len(keeper.fences) == 1 and "self-demotion" in keeper.fences[0]
    keeper.on_answer(result, sent_at=101.0)
    assert len(keeper.fences) == 1  # once


def test_a_long_lapse_stops_the_units_and_a_new_grant_starts_them(keeper):
    keeper.on_answer(answer(), sent_at=100.0)
    keeper.clk.now = 101.9
    keeper.tick()
    assert keeper.state == "held"
    keeper.clk.now = 102.0
    keeper.tick()
    assert keeper.state == "lapsed" and keeper.fake.calls() == []  # the kernel fences; no bounce yet
    keeper.on_answer(answer(), sent_at=102.5)  # a short freeze: granted again, nothing was stopped
    assert keeper.state == "held" and keeper.fake.calls() == []
    keeper.clk.now = 104.5
    keeper.tick()
    keeper.clk.now = 106.5
    keeper.tick()
    assert keeper.state == "stopped"
    assert keeper.fake.calls() == ["stop cloudflared-wirebot", "stop openclaw-gateway"]
    keeper.on_answer(answer(), sent_at=106.6)
    assert keeper.state == "held"
    assert keeper.fake.calls()[2:] == ["start openclaw-gateway", "start cloudflared-wirebot"]  # connector last


def test_a_fence_record_keeps_the_units_down_after_a_grant(keeper, tmp_path):
    keeper.on_answer(answer(), sent_at=100.0)
    for now in (103.0, 105.0):
        keeper.clk.now = now
        keeper.tick()
    assert keeper.state == "stopped"
    (tmp_path / "fenced.json").write_text("{}")
    keeper.on_answer(answer(), sent_at=103.0)
    assert not [c for c in keeper.fake.calls() if c.startswith("start")]


def test_without_the_table_the_lease_is_not_enforced(keeper):
    keeper.nft = lambda _b, _s: (False, "Error: No such file or directory")
    assert keeper.check_table() is False and keeper.payload()["lease"]["enforced"] is False
