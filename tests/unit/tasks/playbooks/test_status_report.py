"""The status table (tasks/playbooks/status_report.py)."""



from tasks.playbooks import status_report


def status_view(**changes):
    unit = {"active": "inactive", "enabled": "enabled"}
    view = {
        "at": 100000.0, "connector": "cloudflared-wirebot", "public": {"status": 200, "origin": "10.0.0.2"},
        "hosts": {"primary": {"name": "10.0.0.2", "reachable": True, "epoch": 3, "fenced": False,
                              "units": {"cloudflared-wirebot": {"active": "active", "enabled": "enabled"}},
                              "markers": {3: ["started.json", "7-done.json"]}},
                  "standby": {"name": "10.0.0.3", "reachable": True, "epoch": 3, "state": "STANDBY",
                              "units": {"cloudflared-wirebot": unit}}},
        "replicator": {"components": {"litestream": "ok"}, "litestream": {
            "/d/events.db": {"lag_seconds": 0.4, "lag_txids": 1, "stalled": False}},
            "file_sync": {"/d/users": {"lag_seconds": 0.0}}},
        "standby_agent": {"state": "STANDBY", "seconds_in_state": 60, "last_heartbeat_age_seconds": 0.7,
                          "last_heartbeat": {"sequence": 9, "epoch": 3}},
        "drill": {"finished_at": 100000.0 - 7200, "ok": True, "lost": 0, "doubled": 0},
    }
    view.update(changes)
    return view


def test_status_table_has_every_part():
    text = status_report.format_table(status_view())
    assert "active side: primary; public answered 200 from primary (10.0.0.2)" in text
    assert "STANDBY for 60 s" in text and "last heartbeat: 0.7 s ago (sequence 9, epoch 3)" in text
    assert "/d/events.db: 0.4 s, 1 txids behind" in text and "/d/users: 0.0 s" in text
    assert "last drill: ok at 1970-01-02 01:46:40 UTC (2.0 h ago) (lost 0, doubled 0)" in text
    assert "last recovery: epoch 3, done" in text


def test_status_table_flags_split_brain_and_unknowns():
    view = status_view(replicator={"error": "no answer"}, drill=None)
    view["hosts"]["standby"]["units"]["cloudflared-wirebot"] = {"active": "active", "enabled": "enabled"}
    text = status_report.format_table(view)
    assert "BOTH connectors running" in text and "last drill: none recorded" in text
    assert "lag per DB: unknown (replicator unreachable)" in text
