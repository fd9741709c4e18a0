"""How fast the drill's surface drains its sync queue after an outage (loopback, the lab's scoreboard
stand-in with a temporary database): `python bench/drill_bench.py [N ...]` (default 100 1000).

Events are created while the hub is unreachable, then the hub comes back and the queue is drained with
sync_once (batches of 20, one POST per event, as during a drill). Prints a table: queued events,
seconds to drain, events per second, and checks every event arrived exactly once.
"""

import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.loopback import free_port, standin_argv
from tasks.core.wait import wait_for
from tasks.drills import report
from tasks.drills.surface import Backoff, Hub, Surface

ROOT = Path(__file__).resolve().parent.parent


def bench(count: int, workdir: Path) -> tuple:
    port, db = free_port(), workdir / f"hub-{count}.db"
    hub = subprocess.Popen(standin_argv("scoreboard.py", "--bind", "127.0.0.1", "--port", port, "--db", db,
                                        "--tenants", workdir / "t"), stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 30, 0.05,
                 "the scoreboard stand-in's port", ignore=(OSError,))
        surface = Surface(str(workdir / f"surface-{count}.db"), Hub(f"http://127.0.0.1:{free_port()}", timeout=1),
                          tag=f"bench-{count}", backoff=Backoff(0.001, 0.001, 0.0))
        surface.create_event()
        surface.sync_once()  # offline: nothing answers on that port
        for _ in range(count - 1):
            surface.create_event()
        surface.hub, surface.next_try = Hub(f"http://127.0.0.1:{port}", "api.wirebot.chat"), 0.0
        started = time.perf_counter()
        while surface.queued():
            surface.sync_once()
        seconds = time.perf_counter() - started
        with sqlite3.connect(db) as conn:
            found = [row[0] for row in conn.execute("SELECT id FROM events")]
        verdict = report.verdict(surface.event_ids(), found)
        surface.close()
        return count, seconds, verdict["exactly_once"]
    finally:
        hub.terminate()
        hub.wait(10)


def main(argv) -> int:
    counts = [int(a) for a in argv] or [100, 1000]
    print(f"{'queued':>8} {'drain s':>9} {'events/s':>10} {'exactly once':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            n, seconds, ok = bench(count, Path(tmp))
            print(f"{n:>8} {seconds:>9.2f} {n / seconds:>10.0f} {str(ok):>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
