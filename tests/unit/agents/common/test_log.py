"""wirebot.common.log: one JSON line per decision, at its journal priority."""

import json
import os

import pytest
from wirebot.common.log import log


def test_log_one_json_line(capsys):
    log("standby", "state-change", reason="because", to="SUSPECT")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    record = json.loads(out)
    assert record["component"] == "standby" and record["event"] == "state-change"
    assert record["level"] == "info" and record["reason"] == "because" and "ts" in record


def test_log_unserialisable_values(capsys):
    log("x", "y", obj=object(), level="error")
    record = json.loads(capsys.readouterr().out)
    assert record["level"] == "error" and "object" in record["obj"]


@pytest.mark.parametrize("level,priority", [("info", 6), ("warning", 4), ("error", 3), ("debug", 7),
                                            ("critical", 2), ("odd", 6)])
def test_log_priority_prefix_only_on_the_journal_stream(tmp_path, monkeypatch, level, priority):
    """On the stream named by $JOURNAL_STREAM each line starts with <N>; anywhere else plain JSON."""
    out = open(tmp_path / "stream", "w+")
    status = os.fstat(out.fileno())
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
    log("standby", "e", level=level)
    monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino + 1}")  # another stream
    log("standby", "f", level=level)
    monkeypatch.delenv("JOURNAL_STREAM")
    log("standby", "g", level=level)
    out.seek(0)
    first, second, third = out.read().splitlines()
    out.close()
    assert first.startswith(f"<{priority}>{{") and json.loads(first[3:])["level"] == level
    assert json.loads(second)["event"] == "f" and json.loads(third)["event"] == "g"
