"""The playbooks' paste-able summary (tasks/playbooks/summary.py)."""



from tasks.playbooks import summary
from tasks.playbooks.timeline import Record


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


def test_summary_collapses_a_run_where_every_step_already_held_for_the_same_reason():
    records = [record(n, key, "already", 0.25, "Nothing to recover: the standby is STANDBY")
               for n, key in ((1, "stop"), (3, "verify"), (7, "confirm"))]
    lines = summary.format_summary("recovery", records, now=0).splitlines()
    assert lines[0].endswith("OK, NOTHING TO DO (1970-01-01 00:00:00 UTC) ===")
    assert "3 steps: Nothing to recover" in lines[2] and "0.75" in lines[3] and len(lines) == 4
