"""tasks/failover.py and tasks/recovery.py on the lab, destructive (issue 5): failover -> recovery twice
with events written through the edge before, during and after; recovery interrupted at each step and
killed mid-merge, then re-run; a failover with the primary killed (the witness confirms); a dead primary
fenced by its lease without an API token; a schema the merge cannot handle refuses the recovery first.
After every recovery each acknowledged event is in the primary's DBs exactly once, at every check one
connector runs (on the expected side), and the edge never saw two origins at once.

The module starts from a clean lab (reset when it is not) and leaves the primary serving.
"""

import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import contextmanager

import pytest

from lab import settings
from lab.agents import standby_status
from lab.baseline import ensure_clean_lab
from lab.client import connector_origins, edge
from lab.commands import PYINFRA, ROOT, changes_in_dry_run, lab_cli, pyinfra
from lab.machines import ssh
from tasks.core.wait import wait_for
from tasks.drills.surface import Backoff, Hub, Surface

PRIMARY, STANDBY = settings.address("primary"), settings.address("standby")
EVENTS_DB = "/data/wirebot/scoreboard/events.db"
TENANT, TENANT_DB = "acme", "/data/wirebot/scoreboard/tenants/acme.db"
TOKEN = "/run/wirebot/cloudflare-api-token"


@contextmanager
def writing(rate=10.0):
    """The drill's synthetic surface (tasks/drills/surface.py) writing `rate` events a second through the
    edge, queued locally and retried until the hub acknowledges them, every 5th one for a tenant; each ack
    records the origin that served it (the lab edge's X-Lab-Origin)."""
    hub = Hub(settings.EDGE_PUBLIC_URL, "wins.wirebot.chat", timeout=3, record_header="X-Lab-Origin")
    with tempfile.TemporaryDirectory() as folder, \
            Surface(f"{folder}/surface.db", hub, tag="playbooks", rate=rate, backoff=Backoff(0.1, 1.0, 0.0),
                    event_type="ship", tenant=TENANT, tenant_every=5) as surface:
        yield surface.start()


def wait_more(surface, count):
    """Wait until `count` more events were acknowledged (served by whoever serves now)."""
    start = surface.stats()["synced"]
    wait_for(lambda: surface.stats()["synced"] >= start + count, timeout=60,
             what=f"{count} more acknowledged events")


def ids_on_primary(db) -> Counter:
    return Counter(ssh("primary", f"sqlite3 -cmd '.timeout 10000' {db} 'select id from events'").stdout.split())


def assert_exactly_once(surface, label):
    """Every acknowledged event in the primary's events.db (tenant events also in the tenant DB) exactly once."""
    wait_for(lambda: surface.queued() == 0, timeout=120, what="the surface's queue to drain")
    acked, tenant = surface.acknowledged(), set(surface.event_ids(tenant=TENANT))
    counts, tenant_counts = ids_on_primary(EVENTS_DB), ids_on_primary(TENANT_DB)
    lost = [i for i in acked if counts[i] == 0] + [i for i in acked if i in tenant and tenant_counts[i] == 0]
    doubled = [i for i in acked if counts[i] > 1 or tenant_counts[i] > 1]
    origins = Counter(acked.values())
    print(f"{label}: {len(acked)} events acknowledged ({dict(origins)}), lost {len(lost)}, doubled {len(doubled)}")
    assert not lost and not doubled, (lost[:5], doubled[:5])
    return origins


def run(playbook, *data, expect_ok=True):
    """Run tasks/<playbook>.py with --data settings; print and return (result, summary text)."""
    args = [arg for item in data for arg in ("--data", item)]
    started = time.monotonic()
    result = pyinfra(*args, "lab/inventory.py", f"tasks/{playbook}.py")
    summary = result.stdout[result.stdout.rfind("=== Wirebot"):]
    print(f"--- {playbook} {' '.join(data)}: exit {result.returncode} in {time.monotonic() - started:.1f} s\n{summary}")
    if expect_ok:
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result, summary


def status_table() -> str:
    """tasks/status.py's table (read-only: a dry run of it must change nothing either)."""
    result = pyinfra("lab/inventory.py", "tasks/status.py")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    table = result.stdout[result.stdout.rfind("=== Wirebot status"):]
    print(table)
    return table


def one_connector(expected):
    """Exactly one connector at the edge, `expected`'s (None: none at all)."""
    wanted = {expected} if expected else set()
    wait_for(lambda: connector_origins() == wanted, timeout=15, what=f"connectors == {wanted}")


def no_overlap(since):
    status, overlaps = edge(f"/lab/overlaps?since={since}")
    assert status == 200 and overlaps == [], overlaps


@pytest.fixture(scope="module", autouse=True)
def clean_lab():
    ensure_clean_lab()
    yield
    lab_cli("boot", "primary")  # a no-op when it runs; after a failed test the primary may be down


def test_failover_then_recovery_twice_loses_and_doubles_nothing():
    since = time.time()
    with writing() as surface:
        wait_for(lambda: surface.stats()["synced"] >= 10, timeout=30, what="events before the failover")
        for cycle in (1, 2):
            run("failover")
            one_connector(STANDBY)
            assert status_table().count("active side: standby; public answered 200 from standby") == 1
            _, again = run("failover")
            assert "OK, NOTHING TO DO" in again
            assert changes_in_dry_run("tasks/failover.py") == []
            wait_more(surface, 10)
            run("recovery")
            one_connector(PRIMARY)
            _, again = run("recovery")
            assert "OK, NOTHING TO DO" in again and "Nothing to recover" in again
            assert changes_in_dry_run("tasks/recovery.py") == []
            table = status_table()
            assert "active side: primary; public answered 200 from primary" in table
            assert f"last recovery: epoch {standby_status()['epoch']}, done" in table
            origins = assert_exactly_once(surface, f"cycle {cycle}")
            assert origins[STANDBY] > 0 and origins[PRIMARY] > 0
    no_overlap(since)


def test_recovery_interrupted_at_every_step_then_killed_mid_merge_completes():
    since = time.time()
    with writing() as surface:
        run("failover")
        one_connector(STANDBY)
        wait_for(lambda: STANDBY in surface.acknowledged().values(), timeout=30, what="an event served by the standby")
        result = pyinfra("--dry", "lab/inventory.py", "tasks/recovery.py", confirm=False)
        assert result.returncode == 0 and "rows to insert as of now" in result.stdout
        for step in range(1, 7):
            _, summary = run("recovery", f"recovery_stop_after={step}")
            assert f"STOPPED after step {step}" in summary
            one_connector(PRIMARY if step >= 6 else None)
            state = standby_status()["state"]
            assert state == ("STANDBY" if step >= 5 else "ACTIVE"), state
        run("recovery")
        one_connector(PRIMARY)
        assert_exactly_once(surface, "stopped after each step")

        run("failover")
        one_connector(STANDBY)
        wait_for(lambda: list(surface.acknowledged().values()).count(STANDBY) >= 5, timeout=30, what="standby events")
        epoch = standby_status()["epoch"] + 1
        marker = f"/var/lib/wirebot/recovery/epoch-{epoch}/2-merged-scoreboard__events.db.json"
        process = subprocess.Popen([PYINFRA, "-y", "lab/inventory.py", "tasks/recovery.py"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            wait_for(lambda: process.poll() is not None or
                     ssh("primary", f"test -e {marker}", check=False).returncode == 0,
                     timeout=120, interval=0.1, what="the events.db merge marker")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"recovery killed mid-merge (exit {process.returncode})")
        one_connector(None)
        run("recovery")
        one_connector(PRIMARY)
        assert_exactly_once(surface, "killed mid-merge")
    no_overlap(since)


def test_failover_with_the_primary_killed_goes_on_when_the_witness_confirms():
    since = time.time()
    with writing() as surface:
        wait_for(lambda: surface.stats()["synced"] >= 5, timeout=30, what="events before the crash")
        lab_cli("kill", "primary")
        _, summary = run("failover")
        assert f"the primary ({PRIMARY}) could not be connected" in summary
        one_connector(STANDBY)
        wait_more(surface, 10)
        lab_cli("boot", "primary")
        run("recovery")
        one_connector(PRIMARY)
        assert_exactly_once(surface, "primary killed")
    no_overlap(since)


def test_without_an_api_token_a_dead_primary_is_fenced_by_its_lease():
    """Without the API the witness cannot say the connector is gone; a dead primary's lease ran out in
    its own kernel, so the standby agent activates on its own and the failover playbook finds it done."""
    since = time.time()
    with writing() as surface:
        try:
            # The agent reads its secrets as of its start (its sandbox mounts them): restart it without one.
            ssh("standby", f"mv {TOKEN} {TOKEN}.aside && systemctl restart wirebot-standby")
            wait_for(lambda: (standby_status() or {}).get("last_heartbeat"), timeout=30,
                     what="the restarted standby agent to hear the primary")
            lab_cli("kill", "primary")
            status = wait_for(lambda: (s := standby_status() or {}).get("state") == "ACTIVE" and s, timeout=60,
                              what="the standby agent to activate on the primary's expired lease")
            assert "kernel-enforced lease ran out" in status["activation"]["reason"]
            one_connector(STANDBY)
            wait_more(surface, 10)
        finally:
            ssh("standby", f"[ -e {TOKEN} ] || mv {TOKEN}.aside {TOKEN}; rm -f {TOKEN}.aside; "
                           "systemctl restart wirebot-standby")
            lab_cli("boot", "primary")
        run("recovery")
        one_connector(PRIMARY)
        assert_exactly_once(surface, "lease-fenced failover")
    no_overlap(since)


def test_a_schema_the_merge_does_not_understand_refuses_the_recovery_before_anything_stops():
    since = time.time()
    with writing() as surface:
        run("failover")
        one_connector(STANDBY)
        wait_more(surface, 5)
        ssh("standby", f"sqlite3 -cmd '.timeout 10000' {EVENTS_DB} 'CREATE TABLE notes(body TEXT)'")
        result, _ = run("recovery", expect_ok=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "Refusing to recover before stopping anything" in output
        assert "table 'notes'" in output and "recovery_skip_dbs" in output
        one_connector(STANDBY)  # nothing was stopped
        assert standby_status()["state"] == "ACTIVE"
        ssh("standby", f"sqlite3 -cmd '.timeout 10000' {EVENTS_DB} 'DROP TABLE notes'")  # the operator fixes the schema
        run("recovery")
        one_connector(PRIMARY)
        assert_exactly_once(surface, "after a schema refusal")
    no_overlap(since)
