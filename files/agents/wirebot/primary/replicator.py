"""The primary's replicator daemon: ``python3 -m wirebot.primary.replicator --config /etc/wirebot/replicator.yml``.

Threads: Litestream supervision (lag per DB, stall alerts; litestream.service runs Litestream), file
sync (inotify + debounced rsync) and signed heartbeats to the standby. Each component has an
explicit state, logged on change. Two listeners (wirebot.common.channel): on listen_address:listen_port, mutual
TLS admitting only the standby: GET /health, GET /status, GET /metrics; on the local control socket the
same plus POST /trigger-sync, POST /drill and POST /epoch (recovery raises the epoch through it), signed with
this host's control key. The replicator is the only writer of its state file (``state_file``: epoch and
sequence numbers). A configuration error names the file and key and exits 2.
"""

import argparse
import signal
import sys
import threading
import time
import uuid

from wirebot.common import channel, config, config_keys, httpapi, inotify, metrics, signing, tls
from wirebot.common.alerts import Alerter
from wirebot.common.log import log
from wirebot.primary import drillwatch, filesync, heartbeat, lease, litestream

COMPONENT = "replicator"
FAILING = {"litestream": ("unreachable", "stalled"), "file_sync": ("failing",), "heartbeat": ("failing",)}
DRILL_KEEP = 10
METRICS_HELP = {
    "up": "1 while the replicator serves /metrics",
    "heartbeats_sent_total": "heartbeats sent to the standby (answered or not)",
    "heartbeat_failures_total": "heartbeats the standby did not accept",
    "heartbeat_consecutive_failures": "heartbeats not accepted in a row (0 after an accepted one)",
    "drill_last_pass_timestamp_seconds": "unix time the last passed fire drill finished, per the "
                                         "fire-drill log (0: no passed drill logged)",
    "drill_watch_since_timestamp_seconds": "unix time the replicator first watched the fire-drill log (the "
                                           "drill deadline counts from it until a drill passes)",
    "db_lag_seconds": "age in seconds of the database's oldest commit not yet in the replica (0: in sync)",
    "db_lag_last_seconds": "the lag, in seconds, at which the database's latest replicated commit reached the "
                           "replica",
    "db_lag_txids": "transaction ids the database's replica is behind",
    "path_lag_seconds": "seconds since the synced path's oldest change not yet on the standby (0: clean)",
    "file_sync_failures_total": "failed rsync runs of the synced path",
    "file_sync_consecutive_failures": "failed rsync runs of the synced path in a row (0 after a success)",
    "component_failing": "1 while the component (litestream, file_sync, heartbeat) is in a failing state",
}
DRILL_TAIL = 4000


def _strings(cfg, key, path, default=config.REQUIRED):
    value = config.get(cfg, key, list, path, default)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise config.ConfigError(f"{path}: {key}[{index}]: expected a non-empty string, got {item!r}")
    return list(value)


def _positive(cfg, key, path, default=config.REQUIRED):
    value = config.get(cfg, key, float, path, default)
    if value <= 0:
        raise config.ConfigError(f"{path}: {key}: expected a positive number, got {value!r}")
    return value


def load_config(path):
    """Read and validate replicator.yml into a flat dict; ConfigError names the file and key."""
    raw = config.load_yaml(path)
    config.check_keys(raw, config_keys.REPLICATOR, path)  # unknown or missing keys: refused before anything
    s = lambda key, default=config.REQUIRED: config.get(raw, key, str, path, default)  # noqa: E731
    c = {
        "node_name": s("node_name"),
        "listen_address": s("listen_address"),           # the API binds only here
        "listen_port": config.get(raw, "listen_port", int, path),
        "state_file": s("state_file"),                   # {"epoch", "sequence", "api_last_sequence"}
        "data_root": s("data_root"),
        "hmac_key_file": s("secrets.hmac_key_file"),     # the heartbeat key (hex), shared with the standby
        "discord_webhook_file": s("secrets.discord_webhook_file"),  # optional alert webhook
        "standby_host": s("standby.host"),
        "standby_user": s("standby.user"),               # rsync over SSH as this user
        "ssh_key": s("standby.ssh_key"),
        "known_hosts": s("standby.known_hosts"),         # StrictHostKeyChecking against this file
        "agent_url": s("standby.agent_url"),             # https://standby:8300; heartbeats go to /heartbeat
        "standby_node": s("standby.node_name"),  # heartbeats are signed for this receiver
        "replica_root": s("standby.replica_root"),       # as the rsync account sees it ("/"): files/... below
        "litestream_socket": s("litestream.socket"),     # Litestream control socket (socket.path)
        "dbs": _strings(raw, "litestream.dbs", path),
        "tenant_dir": s("litestream.tenant_dir"),    # every *.db in it is supervised too
        "stall_seconds": _positive(raw, "litestream.stall_seconds", path),
        "poll_seconds": _positive(raw, "litestream.poll_seconds", path, 5.0),  # stall/record poll period
        # WAL check period: the lag's resolution (a stat per DB; POST /sync only while a commit is pending)
        "lag_sample_seconds": _positive(raw, "litestream.lag_sample_seconds", path, 0.1),
        "paths": _strings(raw, "file_sync.paths", path),
        "debounce_seconds": _positive(raw, "file_sync.debounce_seconds", path),
        "full_sync_minutes": _positive(raw, "file_sync.full_sync_minutes", path),
        "retry_max_seconds": _positive(raw, "file_sync.retry_max_seconds", path),
        "force_scan": config.get(raw, "file_sync.force_scan", bool, path, False),  # skip inotify
        "exclude": _strings(raw, "file_sync.exclude", path),  # absolute paths never synced
        "heartbeat_interval": _positive(raw, "heartbeat.interval_seconds", path),
        "services": _strings(raw, "services", path),  # units reported via systemctl is-active
        "systemctl": s("systemctl", "systemctl"),
        "drill_command": _strings(raw, "drill.command", path),  # argv of POST /drill
        "drill_timeout": _positive(raw, "drill.timeout_seconds", path, 3600.0),
        "drill_log_file": s("drill.log_file"),        # the fire-drill log ("" = no deadline watch)
        "drill_max_age_days": _positive(raw, "drill.max_age_days", path),  # alert past this
        "clock_window": _positive(raw, "heartbeat.clock_window_seconds", path),  # signed POST freshness
        "channel": channel.load_settings(raw, path),     # tls, control socket + key, http bounds
    }
    if not c["agent_url"].startswith("https://"):
        raise config.ConfigError(f"{path}: standby.agent_url: expected an https:// URL (mutual TLS), "
                                 f"got {c['agent_url']!r}")
    for key in ("litestream.socket", "standby.replica_root"):
        if not config.get(raw, key, str, path).startswith("/"):
            raise config.ConfigError(f"{path}: {key}: expected an absolute path")
    c["fencing"] = lease.load_settings(raw, path)  # the serving lease and self-demotion (docs/fencing.md)
    c["hmac_key"] = signing.load_key(c["hmac_key_file"])
    c["control_key"] = signing.load_key(c["channel"]["control_key_file"])
    c["discord_webhook"] = config.read_secret(c["discord_webhook_file"] or None)
    return c


class Replicator:
    """All components of the daemon; ``start()`` runs them, ``stop()`` ends them."""

    def __init__(self, c, command_for=None, probe=None):
        self.c = c
        self.stop_event = threading.Event()
        self.alerter = Alerter(COMPONENT, c["discord_webhook"])
        self.store = heartbeat.StateStore(c["state_file"])
        self.verifier = signing.Verifier(c["control_key"], c["clock_window"],
                                         channel.control_binding(c["node_name"]),
                                         self.store.read().get("api_last_sequence", 0))
        self._verify_lock = threading.Lock()
        self.monitor = litestream.Monitor(litestream.ControlClient(c["litestream_socket"]), c["dbs"],
                                          c["tenant_dir"], c["stall_seconds"], self.alerter,
                                          c.get("lag_sample_seconds", 0.1))
        self.files = filesync.FileSync(
            c["paths"], command_for or self._rsync_command,
            c["debounce_seconds"], c["full_sync_minutes"] * 60, c["retry_max_seconds"], self.alerter,
            exclude=c["exclude"])
        self.drill_watch = None
        if c["drill_log_file"]:
            since = self.store.read().get("drill_watch_since") or self.store.update(
                drill_watch_since=round(time.time(), 3))["drill_watch_since"]
            self.drill_watch = drillwatch.DrillWatch(c["drill_log_file"], c["drill_max_age_days"], self.alerter,
                                                     since)
        self.probe = probe  # None: one `systemctl is-active` call for all services per heartbeat
        self.services = {}
        target = httpapi.Target.peer(c["agent_url"], tls.client_context(c["channel"]["tls"]))
        self.sender = heartbeat.Sender(c["node_name"], httpapi.Session(target), c["hmac_key"],
                                       channel.heartbeat_binding(c["node_name"], c["standby_node"]), self.store,
                                       self._collect)
        self.lease = lease.Keeper(c["fencing"], lambda: int(self.store.read().get("epoch") or 1), self.alerter)
        self.sender.lease = self.lease
        self.states = {}
        self._states_lock = threading.Lock()
        self.drills = []
        self._drill_lock = threading.Lock()
        self.servers = []
        self.watcher = None
        self.threads = []

    # -- components -------------------------------------------------------------------------
    def _rsync_command(self, src):
        c = self.c
        return filesync.rsync_command(src, c["standby_user"], c["standby_host"], c["ssh_key"],
                                      c["known_hosts"], c["replica_root"], exclude=c["exclude"])

    def _collect(self):
        self.services = heartbeat.service_states(self.c["services"], self.probe, self.c["systemctl"])
        return self.services, self.monitor.snapshot(), self.files.status()

    def component_states(self):
        """{component: state}; logs every change with its reason."""
        hb = self.sender.status()
        hb_state = "starting" if hb["last"] is None else (
            "failing" if hb["consecutive_failures"] >= 3 else ("ok" if hb["last"]["ok"] else "retrying"))
        fs_state = "failing" if self.files.failing() else (
            "pending" if any(p["state"] != "clean" for p in self.files.status().values()) else "ok")
        states = {"litestream": self.monitor.state, "file_sync": fs_state, "heartbeat": hb_state}
        reasons = {"litestream": self.monitor.reason, "heartbeat": (hb["last"] or {}).get("reason", ""),
                   "file_sync": "some path failed 3 times in a row" if fs_state == "failing" else fs_state}
        with self._states_lock:
            for name, state in states.items():
                if self.states.get(name) != state:
                    log(COMPONENT, "component-state", part=name, frm=self.states.get(name), to=state,
                        reason=reasons[name])
            self.states = states
        return states

    def start(self):
        """Bind the API (OSError if the address is not ours yet), then start the component threads."""
        self.servers = channel.serve(self.c["channel"], self.c["listen_address"], self.c["listen_port"],
                                     self.peer_routes(), self.routes(), [self.c["standby_host"]], COMPONENT)
        self.lease.check_table()
        watcher = self.watcher = inotify.Watcher(self.c["paths"], force_scan=self.c["force_scan"])
        for name, target in (
                ("litestream", lambda: self.monitor.run(self.stop_event, self.c["poll_seconds"])),
                ("file_sync", lambda: self.files.run(watcher, self.stop_event)),
                ("heartbeat", lambda: self.sender.run(
                    self.stop_event, self.c["heartbeat_interval"],
                    self.c["fencing"]["renew_seconds"] if self.c["fencing"]["enabled"] else None))):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        log(COMPONENT, "started", node=self.c["node_name"], watcher=watcher.mode)
        return self.servers

    def stop(self):
        self.stop_event.set()
        channel.stop(self.servers)
        deadline = time.monotonic() + 1.0  # daemon threads: a restart must not outlast the serving lease
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.watcher is not None:
            self.watcher.close()
        if self.threads and self.c["fencing"]["enabled"]:
            try:  # a last beat renews the lease: a restart (a deploy) does not lapse it
                self.sender.send_once()
            except Exception as exc:  # noqa: BLE001 - stopping anyway
                log(COMPONENT, "last-heartbeat-failed", level="warning", reason=f"{type(exc).__name__}: {exc}")
        log(COMPONENT, "stopped")

    # -- HTTP API ---------------------------------------------------------------------------
    def peer_routes(self):
        """What the standby may read over mutual TLS (nothing that changes anything)."""
        return {("GET", "/health"): self.health, ("GET", "/status"): self.status,
                ("GET", "/metrics"): self.metrics}

    def routes(self):
        """The local control socket: reads and the signed control requests."""
        return {("GET", "/health"): self.health, ("GET", "/status"): self.status,
                ("GET", "/metrics"): self.metrics, ("POST", "/trigger-sync"): self.trigger_sync,
                ("POST", "/drill"): self.drill, ("POST", "/epoch"): self.set_epoch}

    def health(self, _request):
        states = self.component_states()
        failing = [n for n, s in states.items() if s in FAILING.get(n, ())]
        return (503 if failing else 200), {"ok": not failing, "components": states, "failing": failing}

    def status(self, _request):
        with self._drill_lock:
            drills = [dict(d) for d in self.drills]
        return 200, {"node": self.c["node_name"], "epoch": int(self.store.read().get("epoch") or 1),
                     "components": self.component_states(), "services": self.services,
                     "watcher": self.watcher.mode if self.watcher else None,
                     "litestream": self.monitor.snapshot(), "file_sync": self.files.status(),
                     "heartbeat": self.sender.status(), "lease": self.lease.status(), "drills": drills,
                     "connections": channel.stats(self.servers)}

    def metrics(self, _request):
        dbs, paths, hb = self.monitor.snapshot(), self.files.status(), self.sender.status()
        states = self.component_states()
        watch = self.drill_watch
        return 200, metrics.render("wirebot_replicator", {
            "up": 1, "heartbeats_sent_total": hb["sent_total"],
            "heartbeat_failures_total": hb["failures_total"],
            "heartbeat_consecutive_failures": hb["consecutive_failures"],
            "drill_last_pass_timestamp_seconds": None if watch is None else (watch.last_pass or 0),
            "drill_watch_since_timestamp_seconds": None if watch is None else watch.since,
        }, {
            "db_lag_seconds": [({"db": d}, r.get("lag_seconds")) for d, r in sorted(dbs.items())],
            "db_lag_txids": [({"db": d}, r.get("lag_txids")) for d, r in sorted(dbs.items())],
            "db_lag_last_seconds": [({"db": d}, r.get("lag_last_seconds")) for d, r in sorted(dbs.items())],
            "path_lag_seconds": [({"path": p}, r["lag_seconds"]) for p, r in sorted(paths.items())],
            "file_sync_failures_total": [({"path": p}, r["failures_total"])
                                         for p, r in sorted(paths.items())],
            "file_sync_consecutive_failures": [({"path": p}, r["consecutive_failures"])
                                               for p, r in sorted(paths.items())],
            "component_failing": [({"component": n}, int(st in FAILING.get(n, ())))
                                  for n, st in sorted(states.items())],
        }, METRICS_HELP)

    def _verify(self, request):
        """Check the request's signature; 401 with the reason otherwise. Persists the sequence."""
        with self._verify_lock:
            try:
                sequence = self.verifier.verify(request.method, request.path, request.headers, request.body)
            except signing.SignatureError as exc:
                log(COMPONENT, "request-refused", level="warning", path=request.path,
                    client=request.client, reason=exc.reason)
                raise httpapi.HttpError(401, f"signature refused: {exc.reason}") from None
            self.store.update(api_last_sequence=sequence)
        if request.body:
            request.json()  # a signed but malformed body is still a 400
        return sequence

    def trigger_sync(self, request):
        self._verify(request)
        self.files.request_full_sync()
        self.monitor.request_sync()
        log(COMPONENT, "trigger-sync", client=request.client, reason="signed POST /trigger-sync")
        return 202, {"accepted": True, "paths": self.c["paths"]}

    def set_epoch(self, request):
        """POST /epoch {"epoch": N} (signed control request; recovery's step 4 over `wirebot.hosttools.ctl
        set-epoch`): raise this primary's epoch to N. The replicator is the only writer of its state file
        (the heartbeat thread persists sequences in it), so the epoch is changed here, under the store's lock,
        and the next heartbeat carries it. N below the current epoch is refused (409: a stale request never
        lowers it); N equal to it answers 200 with changed false (a re-run of the recovery)."""
        self._verify(request)
        epoch = request.json().get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise httpapi.HttpError(400, 'expected {"epoch": N} with N a positive integer')
        before, after = self.store.raise_epoch(epoch)
        if epoch < before:
            log(COMPONENT, "epoch-refused", level="warning", client=request.client, requested=epoch, epoch=before,
                reason="a lower epoch than this primary's")
            raise httpapi.HttpError(409, f"refused: epoch {epoch} is below this primary's epoch {before}")
        if after != before:
            log(COMPONENT, "epoch-raised", frm=before, to=after, client=request.client,
                reason="signed POST /epoch (recovery)")
        return 200, {"epoch": after, "changed": after != before}

    def drill(self, request):
        self._verify(request)
        if not self.c["drill_command"]:
            raise httpapi.HttpError(503, "no drill command configured")
        with self._drill_lock:
            if any(d["state"] == "running" for d in self.drills):
                raise httpapi.HttpError(409, "a drill is already running")
            run = {"id": uuid.uuid4().hex[:12], "state": "running", "started_at": round(time.time(), 3),
                   "finished_at": None, "exit_code": None, "output_tail": ""}
            self.drills = (self.drills + [run])[-DRILL_KEEP:]
        log(COMPONENT, "drill-started", id=run["id"], command=self.c["drill_command"], client=request.client)
        threading.Thread(target=self._run_drill, args=(run,), name="drill", daemon=True).start()
        return 202, {"id": run["id"]}

    def _run_drill(self, run):
        code, output = filesync.run_command(self.c["drill_command"], self.c["drill_timeout"])
        with self._drill_lock:
            run.update(state="finished" if code == 0 else "failed", exit_code=code,
                       finished_at=round(time.time(), 3), output_tail=output[-DRILL_TAIL:])
        log(COMPONENT, "drill-finished", id=run["id"], exit_code=code)
        self.alerter.send("drill-finished", "drill {} exited {}".format(run["id"], code), id=run["id"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="wirebot.primary.replicator", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/wirebot/replicator.yml")
    args = parser.parse_args(argv)
    try:
        c = load_config(args.config)
        daemon = Replicator(c)
        signal.signal(signal.SIGTERM, lambda *_: daemon.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: daemon.stop_event.set())
        daemon.start()
    except config.ConfigError as exc:
        log(COMPONENT, "config-error", level="error", error=str(exc))
        print(f"wirebot.primary.replicator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log(COMPONENT, "listen-failed", level="error", address=c["listen_address"], port=c["listen_port"],
            error=str(exc), reason="cannot bind the API address; systemd will retry")
        return 1
    while not daemon.stop_event.wait(min(1.0, c["heartbeat_interval"] / 4)):
        daemon.component_states()
        daemon.lease.tick()
        if daemon.drill_watch is not None:
            daemon.drill_watch.check(time.time())
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
