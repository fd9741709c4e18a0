"""Parsing of the merge and key-comparison reports, the public verdict, the summary and the status table."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.drills import public
from tasks.playbooks import model, remote, status_report, summary
from tasks.playbooks.facts import MergeDryRun, last_json
from tasks.playbooks.timeline import Record

MERGE_REPORT = {"ok": True, "dry_run": True, "databases": [
    {"path": "/data/wirebot/scoreboard/events.db", "source": "/x/events.db", "action": "dry-run",
     "tables": [{"table": "events", "source_rows": 40, "target_before": 30, "inserted": 12}],
     "inserted": 12, "missing_after": 0, "ok": True},
    {"path": "/data/wirebot/scoreboard/tenants/acme.db", "source": "/x/acme.db", "action": "dry-run-copy",
     "tables": [{"table": "events", "source_rows": 3, "target_before": 0, "inserted": 3}],
     "inserted": 3, "missing_after": 0, "ok": True},
]}


def test_merge_counts_per_database():
    rows = model.merge_counts(MERGE_REPORT)
    assert [(r["action"], r["source_rows"], r["inserted"]) for r in rows] == [("dry-run", 40, 12),
                                                                               ("dry-run-copy", 3, 3)]
    assert model.merge_counts(None) == [] and model.merge_counts({"databases": []}) == []


def test_the_dry_run_fact_reads_exit_code_report_and_error():
    fact = MergeDryRun()
    ok = fact.process([json.dumps(MERGE_REPORT), "EXIT 0"])
    assert ok["exit"] == 0 and ok["report"]["databases"][0]["inserted"] == 12 and ok["error"] is None
    schema = fact.process(["merge: schema error, nothing changed in that database: x: table 'y': no key", "EXIT 2"])
    assert schema["exit"] == 2 and schema["report"] is None and "table 'y'" in schema["error"]


def test_key_counts_sum_the_tables_of_each_database():
    report = {"ok": False, "missing": 1, "databases": {
        "/p/events.db": {"events": {"source_keys": 5, "target_keys": 9, "missing": 0, "sample": []}},
        "/p/tenants/a.db": {"events": {"source_keys": 2, "target_keys": 1, "missing": 1, "sample": ["u"]},
                            "notes": {"source_keys": 1, "target_keys": 1, "missing": 0, "sample": []}}}}
    assert model.keys_counts(report) == [
        {"path": "/p/events.db", "source_keys": 5, "target_keys": 9, "missing": 0},
        {"path": "/p/tenants/a.db", "source_keys": 3, "target_keys": 2, "missing": 1}]


def test_last_json_takes_the_last_object_line():
    assert last_json(["noise", '{"a": 1}', '{"b": 2}', "tail"]) == {"b": 2}
    assert last_json(["[1, 2]", "{broken"]) is None


def probe(status_code=200, origin="10.0.0.3"):
    return {"status": status_code, "origin": origin, "error": None}


def test_served_by_needs_every_probe_from_the_expected_origin():
    ok, text = model.served_by([probe(), probe()], "10.0.0.3", {"configured": True, "ok": True,
                                                                "origins": ["10.0.0.3"]}, "X-Edge-Origin")
    assert ok and "X-Edge-Origin" in text and "only 10.0.0.3" in text
    ok, text = model.served_by([probe(), probe(origin="10.0.0.2")], "10.0.0.3", None)
    assert not ok and "10.0.0.2" in text
    assert not model.served_by([probe(530, None)], "10.0.0.3", None)[0]
    assert not model.served_by([], "10.0.0.3", None)[0]


def test_served_by_on_real_hosts_trusts_the_api_when_a_token_exists():
    real = [probe(origin=None)] * 3
    assert model.served_by(real, "203.0.113.9", {"configured": True, "ok": True, "origins": ["203.0.113.9"]})[0]
    ok, text = model.served_by(real, "203.0.113.9", {"configured": True, "ok": True,
                                                     "origins": ["198.51.100.1", "203.0.113.9"]})
    assert not ok and "198.51.100.1" in text
    ok, text = model.served_by(real, "203.0.113.9", {"configured": False})
    assert ok and "no API token" in text


def record(number, key, status_, seconds, detail="", host="10.0.0.3"):
    return Record("failover", number, key, "t", host, status_, seconds, detail, at=float(number))


def test_summary_shows_each_step_with_seconds_and_a_total():
    text = summary.format_summary("failover", [record(1, "fence", "done", 1.25, "fenced"),
                                               record(2, "activate", "done", 10.5, "ACTIVE at epoch 2"),
                                               record(3, "verify", "already", 0.03, "served")],
                                  ["the primary was unreachable"], now=0)
    lines = text.splitlines()
    assert lines[0] == "=== Wirebot failover: OK (1970-01-01 00:00:00 UTC) ==="
    assert "activate" in lines[3] and "10.50" in lines[3] and lines[3].endswith("ACTIVE at epoch 2")
    assert "total" in lines[5] and "11.78" in lines[5]
    assert lines[6] == "note: the primary was unreachable"


def test_summary_verdicts():
    done, already = record(1, "fence", "done", 1), record(2, "activate", "already", 0)
    assert summary.verdict([already]) == "OK, NOTHING TO DO"
    assert summary.verdict([done, record(2, "activate", "refused", 0)]) == "REFUSED at step 2 (activate)"
    assert summary.verdict([done, record(2, "activate", "failed", 0)]) == "FAILED at step 2 (activate)"
    assert summary.verdict([done, record(2, "activate", "skipped", 0)]) == "STOPPED after step 1 (as asked)"
    assert summary.verdict([record(1, "fence", "planned", 0)], dry=True) == "DRY RUN: 1 step(s) to do"
    assert summary.verdict([already], dry=True) == "DRY RUN: nothing to do"


def test_summary_indents_multiline_details_under_the_detail_column():
    text = summary.format_summary("recovery", [record(2, "activate", "refused", 0, "first\nsecond")], now=0)
    first, second = text.splitlines()[2:4]
    assert second.strip() == "second" and len(second) - len("second") == first.index("first")


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


def test_summary_collapses_a_run_where_every_step_already_held_for_the_same_reason():
    records = [record(n, key, "already", 0.25, "Nothing to recover: the standby is STANDBY")
               for n, key in ((1, "stop"), (3, "verify"), (7, "confirm"))]
    lines = summary.format_summary("recovery", records, now=0).splitlines()
    assert lines[0].endswith("OK, NOTHING TO DO (1970-01-01 00:00:00 UTC) ===")
    assert "3 steps: Nothing to recover" in lines[2] and "0.75" in lines[3] and len(lines) == 4


@pytest.fixture()
def edge_naming_its_origin():
    """A local HTTP server that answers like the lab's edge: 200 with an origin header (X-Some-Origin)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("X-Some-Origin", "10.0.0.3")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_origin_is_read_only_from_the_header_the_setting_names(edge_naming_its_origin):
    """edge_origin_header: product code knows no lab header; empty (Cloudflare) sees no origin at all."""
    url = f"{edge_naming_its_origin}/health"
    assert remote.probe(url, None, "X-Some-Origin")["origin"] == "10.0.0.3"
    assert remote.probe(url, None, "")["origin"] is None
    assert remote.probe(url, None, "X-Lab-Origin")["origin"] is None
    seen = {}
    assert public.request(url, seen=seen, origin_header="X-Some-Origin")[0] == 200 and seen == {"origin": "10.0.0.3"}
    seen = {}
    assert public.request(url, seen=seen)[0] == 200 and seen == {}
    assert public.health(edge_naming_its_origin, "", origin_header="X-Some-Origin") == (True, "HTTP 200 from 10.0.0.3")
