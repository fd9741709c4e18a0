"""wirebot.common.metrics: Prometheus text exposition."""

import pytest
from wirebot.common import metrics


def test_metrics_render():
    text = metrics.render("wirebot_standby", {"epoch": 3, "seconds_since_heartbeat": 1.5, "none": None,
                                              "heartbeats_accepted_total": 7},
                          {"state": [({"state": "ACTIVE"}, 1), ({"state": "STANDBY"}, 0)],
                           "heartbeats_rejected_total": [({"reason": 'bad"sig'}, 2)]},
                          {"epoch": "the epoch", "seconds_since_heartbeat": "age\nof it", "none": "n",
                           "heartbeats_accepted_total": "accepted", "state": "state",
                           "heartbeats_rejected_total": "refused, by reason"})
    lines = text.splitlines()
    assert "# HELP wirebot_standby_epoch the epoch" in lines
    assert "# HELP wirebot_standby_seconds_since_heartbeat age of it" in lines
    assert "wirebot_standby_epoch 3" in lines
    assert "wirebot_standby_seconds_since_heartbeat 1.5" in lines
    assert "# TYPE wirebot_standby_heartbeats_accepted_total counter" in lines
    assert "# TYPE wirebot_standby_epoch gauge" in lines
    assert 'wirebot_standby_state{state="ACTIVE"} 1' in lines
    assert 'wirebot_standby_heartbeats_rejected_total{reason="bad\\"sig"} 2' in lines
    assert not any("none" in line for line in lines)
    assert text.endswith("\n")


def test_metrics_without_help_is_refused():
    with pytest.raises(KeyError):
        metrics.render("wirebot_x", {"undocumented": 1}, {}, {})
