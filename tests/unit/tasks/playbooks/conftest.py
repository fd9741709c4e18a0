"""Shared data of the playbooks' tests: a merge report as wirebot's merge host tool prints it (--dry-run --json)."""

import copy

import pytest

_MERGE_REPORT = {"ok": True, "dry_run": True, "databases": [
    {"path": "/data/wirebot/scoreboard/events.db", "source": "/x/events.db", "action": "dry-run",
     "tables": [{"table": "events", "source_rows": 40, "target_before": 30, "inserted": 12}],
     "inserted": 12, "missing_after": 0, "ok": True},
    {"path": "/data/wirebot/scoreboard/tenants/acme.db", "source": "/x/acme.db", "action": "dry-run-copy",
     "tables": [{"table": "events", "source_rows": 3, "target_before": 0, "inserted": 3}],
     "inserted": 3, "missing_after": 0, "ok": True},
]}


@pytest.fixture()
def merge_report():
    """A dry-run merge report of two databases: events.db (12 rows to insert) and a new tenant DB (copied)."""
    return copy.deepcopy(_MERGE_REPORT)
