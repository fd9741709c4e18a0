"""wirebot.primary.drillwatch: the drill deadline alert, with a fake clock and a recording alerter."""

import json
import os

from wirebot.primary import drillwatch

DAY = 86400.0
T0 = 1_780_000_000.0  # a fixed "now"


class Recorder:
    def __init__(self):
        self.sent = []

    def send(self, kind, message, **fields):
        self.sent.append((kind, message))


def iso(ts):
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def write(path, *records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def test_last_pass_is_the_newest_passed_line(tmp_path):
    log = tmp_path / "fire-drill.log"
    write(log, {"result": "passed", "finished_at": iso(T0 - 20 * DAY)}, "not json",
          {"result": "passed", "finished_at": iso(T0 - 10 * DAY)}, {"result": "failed", "finished_at": iso(T0)})
    assert drillwatch.last_pass(str(log)) == (T0 - 10 * DAY, "")


def test_missing_unreadable_or_never_passed(tmp_path):
    assert drillwatch.last_pass(str(tmp_path / "none"))[0] is None
    log = tmp_path / "fire-drill.log"
    write(log, {"result": "failed", "finished_at": iso(T0)})
    moment, why = drillwatch.last_pass(str(log))
    assert moment is None and "no passed drill" in why
    if os.geteuid() != 0:
        os.chmod(log, 0)
        assert "cannot read" in drillwatch.last_pass(str(log))[1]


def test_overdue_alerts_once_a_day_and_recovers(tmp_path, capsys):
    log = tmp_path / "fire-drill.log"
    write(log, {"result": "passed", "finished_at": iso(T0 - 30 * DAY)})
    alerts = Recorder()
    watch = drillwatch.DrillWatch(str(log), 35, alerts, T0 - 100 * DAY, check_seconds=60, repeat_seconds=DAY)
    assert watch.check(T0) is False and alerts.sent == []
    assert watch.check(T0 + 5 * DAY + 1) is True  # 35 days and a second since the pass
    assert [k for k, _ in alerts.sent] == ["drill-overdue"] and "35 days" in alerts.sent[0][1]
    watch.check(T0 + 5 * DAY + 120)
    watch.check(T0 + 5 * DAY + 3600)
    assert len(alerts.sent) == 1  # not again within the repeat interval
    watch.check(T0 + 6 * DAY + 2)
    assert len(alerts.sent) == 2
    write(log, {"result": "passed", "finished_at": iso(T0 + 6 * DAY)})
    assert watch.check(T0 + 6 * DAY + 200) is False and watch.last_pass == T0 + 6 * DAY
    assert "drill-passed-again" in capsys.readouterr().out


def test_never_run_alerts_once_the_limit_passed_since_the_watch_began(tmp_path):
    alerts = Recorder()
    watch = drillwatch.DrillWatch(str(tmp_path / "fire-drill.log"), 35, alerts, T0, check_seconds=60)
    assert watch.check(T0) is False and watch.check(T0 + 35 * DAY) is False  # a new installation's grace
    assert watch.check(T0 + 35 * DAY + 61) is True and watch.last_pass is None
    assert "does not exist" in alerts.sent[0][1] and "watched since" in alerts.sent[0][1]
