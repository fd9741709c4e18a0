"""Benchmark the agents' channel on the lab: the cost of a mutual-TLS request, and the heartbeats under a
flood of half-open connections.

``.venv/bin/python bench/channel_bench.py [--seconds 15]`` (root; the lab of WIREBOT_LAB_ID must be up and
deployed). It measures

1. a request over the channel as the primary makes it (from the primary's address, with its certificate:
   TCP connect, TLS handshake, GET /status, answer, close), 30 times in a row: median and worst;
2. for floods of 0, 100, 500 and 1000 half-open connections per attacking address (the edge's, which the
   agents close at accept, and the primary's own, which passes the source filter and meets the connection
   cap), held ``--seconds``: the heartbeats the standby accepted per second, the oldest heartbeat age seen
   (sampled every 0.5 s), and how many of the attacker's connections the standby closed within 2 s and in
   all. The lab sends a heartbeat every second.

Prints Markdown tables. Takes about 2 minutes.
"""

import argparse
import base64
import json
import statistics
import subprocess
import sys
import time

from lab import settings
from lab.agents import standby_status
from lab.baseline import ensure_clean_lab
from lab.channel_attacker import identity, probe, probe_argv

STANDBY = f"{settings.address('standby')}:8300"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def request_cost(count=30):
    request = base64.b64encode(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n").decode()
    spec = {"mode": "send", "probes": [{"target": STANDBY, "tls": identity("primary"), "payload": request,
                                        "wait": 5}] * count}
    results = probe("primary", spec)["results"]
    assert all(r["status"] == 200 for r in results), results[0]
    seconds = [r["seconds"] * 1000 for r in results]
    return [["mTLS GET /status (connect, handshake, request, close)", count, f"{statistics.median(seconds):.1f}",
             f"{max(seconds):.1f}"]]


def flood(where, count, hold):
    """Half-open connections from `where` (500 per process) while sampling the standby's heartbeats."""
    procs = []
    for chunk in range(0, count, 500):
        proc = subprocess.Popen(probe_argv(where), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        proc.stdin.write(json.dumps({"mode": "halfopen", "target": STANDBY, "count": min(500, count - chunk),
                                     "hold": hold}))
        proc.stdin.close()
        procs.append(proc)
    before = standby_status()["heartbeats"]["accepted"]
    started, worst = time.monotonic(), 0.0
    while time.monotonic() - started < hold:
        status = standby_status() or {}
        worst = max(worst, status.get("last_heartbeat_age_seconds") or 0.0)
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    accepted = standby_status()["heartbeats"]["accepted"] - before
    results = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs]
    for proc in procs:
        proc.wait(60)
    opened = sum(r["opened"] for r in results)
    early = sum(r["closed_within_2s"] for r in results)
    closed = sum(r["closed_by_server"] for r in results)
    return [where, count, f"{accepted / elapsed:.2f}", f"{worst:.1f}", f"{early}/{opened}", f"{closed}/{opened}"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python bench/channel_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each flood is held")
    args = parser.parse_args(argv)
    ensure_clean_lab()
    print(table(["request", "n", "median ms", "worst ms"], request_cost()))
    print()
    rows = []
    for where in ("edge", "primary"):
        for count in (0, 100, 500, 1000):
            print(f"flood of {count} from the {where}'s address ...", file=sys.stderr, flush=True)
            rows.append(flood(where, count, args.seconds))
    print(table(["from", "half-open connections", "heartbeats accepted / s", "oldest heartbeat seen (s)",
                 "closed by the standby within 2 s", "closed by the standby in all"], rows))


if __name__ == "__main__":
    main()
