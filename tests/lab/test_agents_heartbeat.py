"""Runtime agents on the lab (issue: runtime agents): signed heartbeats flow from the replicator to the
standby agent every second; the standby's GET /status shows the last heartbeat with the lag per database
(tenant DBs included) and per synced path; the replicator's /status and /metrics show the same lag.

Not destructive; starts from a clean lab (reset when it is not).
"""

import re
import time
import uuid

import pytest

from lab import settings
from lab.agents import AGENT_PORT, agent, standby_status
from lab.baseline import ensure_clean_lab
from lab.client import public
from lab.machines import ssh
from tasks.core.wait import wait_for

PRIMARY = settings.address("primary")
EVENTS_DB = "/data/wirebot/scoreboard/events.db"
DBS = ["/data/wirebot/users/verious/memory/verious.sqlite", EVENTS_DB, "/data/wirebot/mem0/history.db"]
PATHS = ["/data/wirebot/users/verious", "/home/wirebot/clawd", "/data/wirebot/bin"]
LAG_KEYS = {"txid", "replicated_txid", "lag_txids", "lag_seconds", "last_sync_at", "stalled", "error"}
METRIC = re.compile(r'^(\w+)(?:\{(\w+)="([^"]*)"\})? (\S+)$')


def metrics(name: str) -> dict:
    """An agent's GET /metrics as {(metric, label value or None): float or None}."""
    status, text = agent(name, "/metrics")
    assert status == 200 and isinstance(text, str), text
    values = {}
    for line in text.splitlines():
        match = METRIC.match(line)
        if match:
            metric, _, label, value = match.groups()
            values[(metric, label)] = None if value == "NaN" else float(value)
    return values


def replicator_status() -> dict:
    status, body = agent("primary", "/status")
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def tenant_db():
    """A clean lab with one event in a new tenant DB (written through the edge); the tenant DB's path."""
    ensure_clean_lab()
    tenant = f"lab-{uuid.uuid4().hex[:8]}"
    status, reply = public("api.wirebot.chat", "/v1/events", "POST",
                           {"id": str(uuid.uuid4()), "type": "intent", "tenant": tenant})
    assert status == 201, reply
    return f"/data/wirebot/scoreboard/tenants/{tenant}.db"


def test_signed_heartbeats_flow_to_the_standby(tenant_db):
    first = standby_status()
    assert first["state"] == "STANDBY" and first["epoch"] == 1
    later = wait_for(lambda: (s := standby_status())["heartbeats"]["accepted"]
                     >= first["heartbeats"]["accepted"] + 2 and s,
                     timeout=15, what="two more heartbeats")
    beat = later["last_heartbeat"]
    assert (beat["node"], beat["source"], beat["epoch"]) == ("primary", PRIMARY, 1)
    previous = first["last_heartbeat"]
    assert beat["sequence"] > previous["sequence"] and beat["sent_at"] > previous["sent_at"]
    assert later["misses"] == 0 and later["reason"] != "" and later["miss_threshold"] == 3
    assert beat["services"] == {"openclaw-gateway": "active", "wirebot-scoreboard": "active",
                                "cloudflared-wirebot": "active", "litestream": "active"}
    print(f"\nlast heartbeat {later['last_heartbeat_age_seconds']:.2f} s old, sequence {beat['sequence']}, "
          f"{later['heartbeats']['accepted']} accepted")


def test_the_beats_ride_one_kept_alive_connection(tenant_db):
    """Lease beats every R and heartbeats every I share one mutual-TLS connection: the standby's peer
    listener holds it open between beats, and the replicator opens no new one while the beats go on."""
    first = replicator_status()["heartbeat"]
    later = wait_for(lambda: (h := replicator_status()["heartbeat"])["sent_total"] >= first["sent_total"] + 10
                     and h, timeout=30, what="ten more beats")
    assert later["connections_opened"] - first["connections_opened"] <= 1  # at most one replaced (10 min)
    peer = standby_status()["connections"]["peer"]
    assert peer["open"] >= 1 and peer["timed_out"] == 0
    established = ssh("primary", f"ss -Htn state established dst {settings.address('standby')}:{AGENT_PORT}").stdout
    assert len(established.splitlines()) == 1, established


def test_the_standby_status_shows_lag_per_db_and_per_path(tenant_db):
    def with_tenant():
        status = standby_status()
        return status if tenant_db in status["last_heartbeat"]["litestream"] else None

    beat = wait_for(with_tenant, timeout=30, what="the new tenant DB in the heartbeat")["last_heartbeat"]
    assert set(beat["litestream"]) >= set(DBS) | {tenant_db}
    for db, record in beat["litestream"].items():
        assert set(record) == LAG_KEYS, db
        assert record["error"] is None and record["stalled"] is False, (db, record)
    assert beat["litestream"][EVENTS_DB]["txid"] >= 1
    assert isinstance(beat["litestream"][EVENTS_DB]["lag_seconds"], (int, float))
    assert set(beat["file_sync"]) == set(PATHS)
    for path, record in beat["file_sync"].items():
        assert isinstance(record["lag_seconds"], (int, float)) and record["last_success_at"], (path, record)
        assert record["consecutive_failures"] == 0
    for db in [EVENTS_DB, tenant_db]:
        record = beat["litestream"][db]
        print(f"\n{db}: txid {record['txid']} replicated {record['replicated_txid']} "
              f"lag {record['lag_txids']} txids / {record['lag_seconds']} s", end="")


def test_the_lag_follows_a_write_from_the_replicator_to_the_standby(tenant_db):
    before = replicator_status()["litestream"][EVENTS_DB]["txid"]
    status, _ = public("api.wirebot.chat", "/v1/events", "POST", {"id": str(uuid.uuid4()), "type": "ship"})
    assert status == 201
    written = time.monotonic()

    def replicated():
        record = replicator_status()["litestream"][EVENTS_DB]
        return record if record["txid"] > before and record["lag_txids"] == 0 else None

    record = wait_for(replicated, timeout=30, what="the write replicated according to the replicator")
    wait_for(lambda: standby_status()["last_heartbeat"]["litestream"][EVENTS_DB]["txid"] >= record["txid"],
             timeout=10, what="the standby's heartbeat to carry the new txid")
    print(f"\ntxid {before} -> {record['txid']}, replicated and reported to the standby after "
          f"{time.monotonic() - written:.1f} s")


def test_a_changed_file_is_synced_and_its_path_lag_reported(tenant_db):
    name = f"lab-{uuid.uuid4().hex[:8]}.md"
    written = time.time()
    ssh("primary", f"echo probe > /home/wirebot/clawd/{name}")
    replica = f"/var/lib/wirebot-replica/files/home/wirebot/clawd/{name}"
    wait_for(lambda: ssh("standby", f"test -f {replica}", check=False).returncode == 0, timeout=30,
             what="the file in the standby's replica")
    record = wait_for(lambda: (r := replicator_status()["file_sync"]["/home/wirebot/clawd"])["state"] == "clean"
                      and r["last_success_at"] >= written and r, timeout=15, what="the path to be clean")
    assert record["lag_seconds"] == 0 and record["consecutive_failures"] == 0
    print(f"\nsynced after {record['last_success_at'] - written:.2f} s")
    ssh("primary", f"rm -f /home/wirebot/clawd/{name}")


def test_the_replicator_status_and_metrics_show_lag(tenant_db):
    status = replicator_status()
    assert status["node"] == "primary" and status["epoch"] == 1
    assert status["components"]["heartbeat"] == "ok" and status["components"]["file_sync"] in ("ok", "pending")
    assert status["heartbeat"]["last"]["ok"] and status["heartbeat"]["last"]["response"]["state"] == "STANDBY"
    assert set(status["litestream"]) >= set(DBS) | {tenant_db}
    assert set(status["file_sync"]) == set(PATHS)
    values = metrics("primary")
    for db in DBS + [tenant_db]:
        assert ("wirebot_replicator_db_lag_seconds", db) in values, db
        assert values[("wirebot_replicator_db_lag_txids", db)] is not None, db
    for path in PATHS:
        assert values[("wirebot_replicator_path_lag_seconds", path)] is not None, path
    assert values[("wirebot_replicator_heartbeats_sent_total", None)] > 0
    assert values[("wirebot_replicator_up", None)] == 1
    standby = metrics("standby")
    assert standby[("wirebot_standby_state", "STANDBY")] == 1 and standby[("wirebot_standby_epoch", None)] == 1
    assert standby[("wirebot_standby_heartbeats_accepted_total", None)] > 0
    assert standby[("wirebot_standby_seconds_since_heartbeat", None)] is not None
    print(f"\nevents.db lag {values[('wirebot_replicator_db_lag_seconds', EVENTS_DB)]} s; standby "
          f"{standby[('wirebot_standby_seconds_since_heartbeat', None)]:.2f} s since the last heartbeat")
