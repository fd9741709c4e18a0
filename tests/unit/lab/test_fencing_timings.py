"""lab/fencing.py Timings (the scenarios' freezes and waits follow the deployed timings) and lab/inventory.py's
WIREBOT_LAB_TIMINGS switch (the lab at group_data's own heartbeat and fencing timings)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import fencing
from lab.group_data import group_settings

ROOT = Path(__file__).resolve().parents[3]
KEYS = ("heartbeat_interval_seconds", "heartbeat_miss_threshold", "fencing_lease_seconds", "fencing_watch_seconds")


def test_lab_timings_keep_the_scenarios_lab_durations():
    t = fencing.Timings(interval=1, miss=3, lease=2, watch=1, probe=0.5, failures=2)
    assert (t.detection, t.edge_detection, t.short_freeze, t.long_freeze) == (3, 4, 1.5, 2.6)
    assert (t.active_timeout, t.hold, t.after_thaw, t.hold_after_active) == (120, 120, 4, 2)


def test_default_timings_scale_every_wait():
    t = fencing.timings_from(group_settings("all"))
    assert (t.interval, t.miss, t.lease, t.watch, t.probe, t.failures) == (30, 3, 10, 5, 2, 3)
    assert t.detection == 90 and t.edge_detection == 9
    # nothing / a freeze past the lease, which the edge detector (9 s < lease 10 s) takes over
    assert t.short_freeze < t.edge_detection < t.lease < t.long_freeze < t.detection
    assert t.active_timeout > t.detection + 10  # detection plus a frozen primary's 10 s SSH fence timeout
    assert t.hold >= t.active_timeout and t.after_thaw > t.interval + 2 * t.watch


def inventory_data(timings):
    env = {**os.environ, "WIREBOT_LAB_TIMINGS": timings}
    script = ("import json, runpy, tasks.core.settings_check as c; "
              "c.check_inventory = lambda *a: None; "  # no lab's secrets
              "ns = runpy.run_path('lab/inventory.py'); "
              "print(json.dumps([ns['primary'][0][1], ns['standby'][0][1]], default=str))")
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("timings, expected", [("lab", {"heartbeat_interval_seconds": 1, "heartbeat_miss_threshold": 3,
                                                        "fencing_lease_seconds": 2, "fencing_watch_seconds": 1}),
                                               ("default", {})])
def test_the_inventory_switch_leaves_the_defaults_to_group_data(timings, expected):
    result = inventory_data(timings)
    assert result.returncode == 0, result.stderr
    for data in json.loads(result.stdout):
        assert {key: data[key] for key in KEYS if key in data} == expected


def test_the_inventory_refuses_an_unknown_timings_value():
    result = inventory_data("fast")
    assert result.returncode != 0 and "WIREBOT_LAB_TIMINGS must be 'lab' or 'default', not 'fast'" in result.stderr


def test_detection_bounds_per_scenario():
    lab = fencing.Timings(interval=1, miss=3, lease=2, watch=1, probe=0.5, failures=2)
    assert lab.detection_bound("freeze-0.5") == 3.5  # D (after the edge's 3 s expiry) + a probe interval
    assert lab.detection_bound("drop-p2s") == 5.75  # lease + 0.25 + expiry, then the refused re-checks end
    default = fencing.timings_from(group_settings("all"))
    assert default.detection_bound("freeze-5") == 11  # the edge detector: expiry + 3 probes + one of phase
    assert default.detection_bound("cut-standby") == 21.25  # lease lapse, expiry, 3 probes, phase
    assert default.detection_bound("cut-edge") is None  # the primary's own readiness lag: not bounded here
