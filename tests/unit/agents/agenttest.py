"""Helpers for the agent unit tests: fake systemctl, loopback HTTP servers, real Litestream replicas."""

import atexit
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
AGENTS = os.path.join(REPO, "files", "agents")

LITESTREAM = os.path.join(REPO, ".venv", "bin", "litestream")
CONTROL_KEY_HEX = "c3" * 32
_TLS_CACHE = {}


def tls_identities(names=("primary", "standby", "stranger")):
    """{name: {"cert_file", "key_file"}}: a key and self-signed certificate per name, made once per session
    with the deploy's own openssl command (tasks.core.ops.tls_keypair_command)."""
    from tasks.core.ops import tls_keypair_command

    for name in names:
        if name not in _TLS_CACHE:
            folder = tempfile.mkdtemp(prefix=f"wirebot-tls-{name}-")
            atexit.register(shutil.rmtree, folder, True)
            key, cert = os.path.join(folder, "agent.key"), os.path.join(folder, "agent.crt")
            subprocess.run(["sh", "-c", tls_keypair_command(key, cert, f"wirebot-{name}")], check=True)
            _TLS_CACHE[name] = {"cert_file": cert, "key_file": key}
    return {name: dict(_TLS_CACHE[name]) for name in names}


def tls_settings(me, peer):
    """The ``tls`` section for host ``me`` pinning ``peer`` (names from tls_identities)."""
    ids = tls_identities()
    return dict(ids[me], peer_cert_file=ids[peer]["cert_file"])


def channel_config(tmp_path, me, peer, read_timeout=10, max_connections=32):
    """The keys wirebot.common.channel reads, for a test agent ``me`` talking to ``peer``; writes the control key."""
    key = os.path.join(str(tmp_path), f"control-{me}.key")
    with open(key, "w") as handle:
        handle.write(CONTROL_KEY_HEX + "\n")
    return {"tls": tls_settings(me, peer), "control": {"socket": os.path.join(str(tmp_path), f"{me}.sock")},
            "http": {"read_timeout_seconds": read_timeout, "max_connections": max_connections},
            "control_key_file": key}

FAKE_SYSTEMCTL = r"""#!/bin/sh
# Fake systemctl: logs "verb unit" to $DIR/log, keeps unit state in $DIR/state/<unit>.
# Fails a verb when $DIR/fail/<verb>-<unit> exists (its content goes to stderr).
DIR="$(dirname "$0")"
[ "$1" = --no-block ] && shift
verb="$1"; unit="$2"
echo "$verb $unit" >> "$DIR/log"
mkdir -p "$DIR/state" "$DIR/masked"
if [ -f "$DIR/fail/$verb-$unit" ]; then cat "$DIR/fail/$verb-$unit" >&2; exit 1; fi
case "$verb" in
  start) echo active > "$DIR/state/$unit" ;;
  stop) [ -f "$DIR/sticky/$unit" ] || echo inactive > "$DIR/state/$unit" ;;
  mask) touch "$DIR/masked/$unit" ;;
  is-active) s="$(cat "$DIR/state/$unit" 2>/dev/null || echo inactive)"; echo "$s";
             [ "$s" = active ] && exit 0; exit 3 ;;
  is-enabled) if [ -f "$DIR/masked/$unit" ]; then echo masked; exit 1; fi; echo enabled ;;
  show) if [ -f "$DIR/missing/$unit" ]; then echo LoadState=not-found;
        elif [ -f "$DIR/masked/$unit" ]; then echo LoadState=masked; else echo LoadState=loaded; fi
        echo "ActiveState=$(cat "$DIR/state/$unit" 2>/dev/null || echo inactive)" ;;
esac
exit 0
"""


class FakeSystemctl:
    """A fake systemctl in its own directory. ``path`` is the binary."""

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(os.path.join(self.dir, "fail"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "sticky"), exist_ok=True)
        self.path = os.path.join(self.dir, "systemctl")
        with open(self.path, "w") as handle:
            handle.write(FAKE_SYSTEMCTL)
        os.chmod(self.path, 0o755)

    def calls(self):
        try:
            with open(os.path.join(self.dir, "log")) as handle:
                return [line.strip() for line in handle if line.strip()]
        except FileNotFoundError:
            return []

    def fail(self, verb, unit, message="simulated failure"):
        with open(os.path.join(self.dir, "fail", f"{verb}-{unit}"), "w") as handle:
            handle.write(message + "\n")

    def unfail(self, verb, unit):
        os.unlink(os.path.join(self.dir, "fail", f"{verb}-{unit}"))

    def set_state(self, unit, state):
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        with open(os.path.join(self.dir, "state", unit), "w") as handle:
            handle.write(state + "\n")

    def sticky(self, unit):
        """``stop`` of this unit leaves it active (a unit that will not stop)."""
        open(os.path.join(self.dir, "sticky", unit), "w").close()

    def state(self, unit):
        try:
            with open(os.path.join(self.dir, "state", unit)) as handle:
                return handle.read().strip()
        except FileNotFoundError:
            return "inactive"

    def masked(self, unit):
        return os.path.exists(os.path.join(self.dir, "masked", unit))

    def missing(self, unit):
        """``show`` reports this unit not-found (a unit name systemd does not know)."""
        os.makedirs(os.path.join(self.dir, "missing"), exist_ok=True)
        open(os.path.join(self.dir, "missing", unit), "w").close()



def cloudflare_envelope(*origins):
    """A tunnel-connections answer of Cloudflare's API with one connector per origin IP."""
    return {"success": True, "errors": [], "messages": [], "result": [
        {"id": f"connector-{i}", "conns": [{"id": f"c{i}", "origin_ip": ip, "opened_at": "2025-01-01"}]}
        for i, ip in enumerate(origins)]}


class FakeHttp:
    """A loopback HTTP server answering each path with a settable (status, JSON or text body).

    ``answers[path]`` is (status, body), (status, body, {header: value}) or a callable(handler) returning
    one of those; ``requests`` records (method, path, headers) tuples.
    """

    def __init__(self):
        self.answers = {}
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                path = self.path.split("?")[0]
                owner.requests.append((self.command, path, dict(self.headers.items())))
                answer = owner.answers.get(path, (404, {"error": "not found"}))
                if callable(answer):
                    answer = answer(self)
                status, body, *extra = answer
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _answer
            do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path=""):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def set(self, path, status, body=None):
        self.answers[path] = (status, {} if body is None else body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def make_db(path, rows, table="t"):
    """A WAL-mode SQLite DB at ``path`` with ``rows`` rows (x = 0..rows-1)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (x INTEGER)")
    conn.executemany(f"INSERT INTO {table} VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()


def replicate(db_path, replica_dir):
    """Write a real Litestream file replica of ``db_path`` into ``replica_dir`` (one-shot sync)."""
    subprocess.run([LITESTREAM, "replicate", "-once", db_path, "file://" + replica_dir], check=True,
                   capture_output=True, timeout=60)


def count_rows(path, table="t"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


KEY_HEX = "5a" * 32
_REPLICA_CACHE = {}


class Site:
    """A standby's world in a temp dir: standby.yml, key, replica tree (real Litestream replicas of
    an older epoch-1 and the current epoch-2), stale live DBs, file-sync trees, loopback health and
    tunnel-ready servers, a fake systemctl and a fake ssh."""

    def __init__(self, tmp_path, http_server, fake_systemctl):
        self.tmp = tmp_path
        self.systemctl = fake_systemctl
        self.data_root = str(tmp_path / "data")
        self.replica_root = str(tmp_path / "replica")
        self.state_file = str(tmp_path / "state" / "state.json")
        self.key_file = tmp_path / "agent-hmac.key"
        self.key_file.write_text(KEY_HEX + "\n")
        self.key = bytes.fromhex(KEY_HEX)
        self.dbs = [os.path.join(self.data_root, rel) for rel in
                    ("users/verious/memory/verious.sqlite", "scoreboard/events.db", "mem0/history.db")]
        self.tenant_dir = os.path.join(self.data_root, "scoreboard", "tenants")
        self.files_live = [str(tmp_path / "live" / "clawd"), str(tmp_path / "live" / "bin")]
        self.gateway = http_server()
        self.gateway.set("/health", 200, {"ok": True})
        self.scoreboard = http_server()
        self.scoreboard.set("/health", 200, {"ok": True})
        self.tunnel = http_server()
        self.tunnel.set("/ready", 200, {"status": 200, "readyConnections": 2})
        self.ssh = str(tmp_path / "ssh")
        self.set_ssh("echo 'ssh: connect to host 10.213.0.2 port 22: No route to host' >&2; exit 255")
        self.edge = http_server()
        self.edge.set("/health", 530, "error code: 1033")
        self.channel = channel_config(tmp_path, "standby", "primary")
        self.control_key = bytes.fromhex(CONTROL_KEY_HEX)
        self.cfg = {
            "tls": self.channel["tls"], "control": self.channel["control"], "http": self.channel["http"],
            "node_name": "standby", "listen_address": "127.0.0.1", "listen_port": free_port(),
            "state_file": self.state_file, "data_root": self.data_root,
            "secrets": {"hmac_key_file": str(self.key_file),
                        "control_key_file": self.channel["control_key_file"],
                        "discord_webhook_file": str(tmp_path / "absent-webhook"),
                        "cloudflare_api_token_file": str(tmp_path / "absent-token")},
            "heartbeat": {"interval_seconds": 2, "miss_threshold": 3, "clock_window_seconds": 60,
                          "allowed_sources": ["127.0.0.1"], "sender": "primary"},
            "primary": {"address": "10.213.0.2", "fence_user": "root", "fence_ssh_key": "/k/fence",
                        "known_hosts": "/k/known", "ssh_timeout_seconds": 2, "ssh_binary": self.ssh},
            "witness": {"public_url": self.edge.url("/health"), "public_host_header": "wins.example.test",
                        "cloudflare_api_base": self.edge.url("/client/v4"), "account_id": "acct",
                        "tunnel_id": "tun", "self_origin_ip": "10.213.0.3", "timeout_seconds": 2},
            "replica": {"root": self.replica_root},
            "fencing": {"watch_seconds": 5},
            "activation": {
                "litestream_binary": LITESTREAM, "dbs": self.dbs, "tenant_dir": self.tenant_dir,
                "file_sync_paths": self.files_live,
                "services": [{"unit": "openclaw-gateway", "health_url": self.gateway.url("/health")},
                             {"unit": "wirebot-scoreboard", "health_url": self.scoreboard.url("/health")}],
                "tunnel": {"unit": "cloudflared-wirebot", "ready_url": self.tunnel.url("/ready")},
                "timeout_seconds": 2, "systemctl": fake_systemctl.path, "retry_seconds": 0.2,
            },
        }
        self.config_path = str(tmp_path / "standby.yml")
        self.write_config()

    def set_ssh(self, script):
        with open(self.ssh, "w") as handle:
            handle.write("#!/bin/sh\n" + script + "\n")
        os.chmod(self.ssh, 0o755)

    def write_config(self):
        import yaml

        with open(self.config_path, "w") as handle:
            yaml.safe_dump(self.cfg, handle)

    def settings(self):
        from wirebot.standby import agent_config as standby_config

        self.write_config()
        return standby_config.load(self.config_path)

    def replica_dir(self, live, epoch=2):
        return os.path.join(self.replica_root, "litestream", f"epoch-{epoch}",
                            os.path.relpath(live, self.data_root))

    def build_replicas(self, rows=50, tenants=("acme", "globex"), epoch=2, skip=()):
        """Primary-side DBs with ``rows`` rows each, replicated for real into epoch-N (built once per
        test session with the real litestream binary, then copied)."""
        rels = [os.path.relpath(p, self.data_root) for p in self.dbs if p not in skip]
        rels += [os.path.relpath(os.path.join(self.tenant_dir, f"{t}.db"), self.data_root) for t in tenants]
        cache_key = (rows, tuple(rels))
        if cache_key not in _REPLICA_CACHE:
            template = tempfile.mkdtemp(prefix="wirebot-replica-template-")
            atexit.register(shutil.rmtree, template, True)
            for rel in rels:
                src = os.path.join(template, "src", rel)
                make_db(src, rows)
                replicate(src, os.path.join(template, "replica", rel))
            _REPLICA_CACHE[cache_key] = os.path.join(template, "replica")
        shutil.copytree(_REPLICA_CACHE[cache_key], os.path.join(self.replica_root, "litestream",
                                                                f"epoch-{epoch}"), dirs_exist_ok=True)

    def build_files(self):
        for live in self.files_live:
            src = os.path.join(self.replica_root, "files", live.lstrip("/"))
            os.makedirs(os.path.join(src, "sub"), exist_ok=True)
            with open(os.path.join(src, "sub", "config.json"), "w") as handle:
                handle.write('{"replicated": true}\n')

    def stale_live(self, rows=3):
        """Existing live DBs (older data, 0640) with stale -wal/-shm beside them."""
        for live in self.dbs:
            make_db(live, rows)
            os.chmod(live, 0o640)
            for suffix in ("-wal", "-shm"):
                with open(live + suffix, "wb") as handle:
                    handle.write(b"stale")


def assert_exposition_documented(text):
    """Every metric in a Prometheus text exposition has its # HELP (non-empty) and # TYPE before its samples."""
    helped, typed = set(), set()
    samples = 0
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, words = line[7:].partition(" ")
            assert words.strip(), f"empty HELP for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split()
            assert kind in ("counter", "gauge") and name in helped, line
            typed.add(name)
        elif line:
            name = line.split("{")[0].split()[0]
            assert name in typed, f"sample without HELP/TYPE: {line}"
            samples += 1
    assert samples and helped == typed
