"""Replication lag on the lab: the replicator's figure against the measured end-to-end lag.

``WIREBOT_LAB_ID=N .venv/bin/python bench/lag_bench.py [--seconds 20] [--rates 0.5,10,50]`` (root; the lab
up and deployed, primary serving). For each write rate (0.5/s stands for idle: a lone write now and
then), for ``--seconds``:

* on the primary, rows go into the scoreboard's events.db at that rate (one transaction each); each
  row's acknowledgement time is kept, and the local LTX files Litestream makes are watched (every 2 ms)
  to know which LTX first holds each row (the first one to appear after the row was acknowledged);
* on the standby, the replica's LTX folder is watched (every 5 ms): a row is in the standby's replica
  when the first LTX file whose TXID range reaches the row's LTX appears there;
* from the control machine the replicator's ``GET /status`` is read every 50 ms: ``lag_seconds`` (the
  age of the oldest unreplicated commit now) and ``lag_last_seconds`` (the lag at which the latest
  commit was replicated).

Prints a table per rate: the end-to-end lag per row (median, p95, max) and of the oldest row of each
replicated batch (what the replicator's figure measures), against the replicator's figures (median and
max of lag_last_seconds, max of the sampled lag_seconds), and the differences. Same clock on both lab
hosts (containers on one machine). A row whose LTX was being written while it committed can be given the
next LTX: that only makes the measured lag larger, by one LTX interval at most.
"""

import argparse
import json
import statistics
import subprocess
import threading
import time

from lab.agents import agent
from lab.machines import ssh

DB = "/data/wirebot/scoreboard/events.db"
LOCAL_LTX = "/data/wirebot/scoreboard/.events.db-litestream/ltx/0"

WRITER = r'''
import json, os, sqlite3, sys, threading, time, uuid
rate, seconds, db, ltx = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
seen, stop = {}, threading.Event()
def watch():
    while not stop.is_set():
        now = time.time()
        for name in os.listdir(ltx):
            if name.endswith(".ltx") and name not in seen:
                seen[name] = now
        time.sleep(0.002)
threading.Thread(target=watch, daemon=True).start()
conn = sqlite3.connect(db, isolation_level=None, timeout=10)
acks, start = [], time.time()
n = 0
while time.time() - start < seconds:
    due = start + n / rate
    if due > time.time():
        time.sleep(due - time.time())
    conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", (str(uuid.uuid4()), "lag-bench", None, "{}", 0,
                 "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "lag-bench"))
    acks.append(time.time())
    n += 1
time.sleep(3)  # the last rows' LTX
stop.set()
print(json.dumps({"acks": acks, "ltx": seen}))
'''

WATCHER = r'''
import json, os, sys, time
folder, seconds = sys.argv[1], float(sys.argv[2])
seen, end = {}, time.time() + seconds
while time.time() < end:
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names:
        if name.endswith(".ltx") and name not in seen:
            seen[name] = now
    time.sleep(0.005)
print(json.dumps(seen))
'''


def txid_range(name):
    low, high = name.split(".")[0].split("-")
    return int(low, 16), int(high, 16)


def run_script(host, script, *args, timeout):
    quoted = " ".join(f"'{a}'" for a in args)
    return ssh(host, f"python3 - {quoted} <<'PY'\n{script}\nPY", timeout=timeout).stdout


def replica_folder():
    out = ssh("standby", "ls -d /var/lib/wirebot-replica/litestream/epoch-*/scoreboard/events.db/ltx/0 | sort -V | "
                         "tail -1").stdout.strip()
    if not out:
        raise SystemExit("lag_bench: no replica LTX folder for events.db on the standby")
    return out


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def measure(rate, seconds, folder):
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            status, body = agent("primary", "/status")
            if status == 200:
                rec = body["litestream"].get(DB) or {}
                samples.append((time.time(), rec.get("lag_seconds"), rec.get("lag_last_seconds")))
            time.sleep(0.05)

    result = {}
    watcher = threading.Thread(target=lambda: result.update(
        standby=json.loads(run_script("standby", WATCHER, folder, seconds + 8, timeout=seconds + 60))))
    watcher.start()
    time.sleep(1.0)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    primary = json.loads(run_script("primary", WRITER, rate, seconds, DB, LOCAL_LTX, timeout=seconds + 60))
    stop.set()
    watcher.join()
    sampler.join(5)
    local = sorted((t, txid_range(n)[1]) for n, t in primary["ltx"].items())
    remote = sorted((t, txid_range(n)[1]) for n, t in result["standby"].items())
    e2e, ticks = [], []  # ticks: [first arrival, oldest row's lag] per replica upload
    for ack in primary["acks"]:
        txid = next((x for t, x in local if t >= ack), None)
        arrived = next((t for t, x in remote if x >= txid), None) if txid is not None else None
        if arrived is None:
            continue
        e2e.append(arrived - ack)
        if not ticks or arrived - ticks[-1][0] > 0.1:  # a new upload (uploads are about 1 s apart)
            ticks.append([arrived, arrived - ack])  # acks in order: the first row is the oldest
    pairs = []  # (e2e of the tick's oldest row, the replicator's lag_last_seconds that followed it)
    for arrived, lag in ticks:
        before = [x[2] for x in samples if x[0] < arrived]
        after = [x[2] for x in samples if arrived <= x[0] <= arrived + 0.5 and x[2] != (before or [None])[-1]]
        if after:
            pairs.append((lag, after[0]))
    return {"rows": len(primary["acks"]), "measured": len(e2e), "e2e": e2e, "pairs": pairs,
            "gauge": [x[1] for x in samples if x[1] is not None], "samples": len(samples)}


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average: ")[-1].strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of writing per rate")
    p.add_argument("--rates", default="0.5,10,50", help="comma-separated writes per second (0.5: idle)")
    p.add_argument("--label", default="", help="named in the table's title (e.g. which agents' code runs)")
    a = p.parse_args()
    folder = replica_folder()
    rows = []
    for rate in [float(r) for r in a.rates.split(",")]:
        before = load()
        m = measure(rate, a.seconds, folder)
        rows.append((rate, m, before, load()))
    print(f"{a.label + ': ' if a.label else ''}"
          "end-to-end lag (row acknowledged on the primary -> its LTX in the standby's replica) against the "
          "replicator's (GET /status every 50 ms), seconds. Per upload: the oldest row's end-to-end lag and the "
          "replicator's lag_last_seconds right after it")
    print("| writes/s | rows | e2e median | e2e p95 | e2e max | uploads matched | per upload: e2e median / max "
          "| replicator median / max | diff median / max abs | sampled lag_seconds max - e2e max | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for rate, m, before, after in rows:
        e2e, pairs = m["e2e"], m["pairs"] or [(float("nan"), float("nan"))]  # none: no lag_last_seconds
        ours, theirs = [p[0] for p in pairs], [p[1] for p in pairs]
        diffs = [b - a for a, b in pairs]
        print(f"| {rate:g} | {m['rows']} | {statistics.median(e2e):.3f} | {pct(e2e, 0.95):.3f} | {max(e2e):.3f} | "
              f"{len(m['pairs'])} | {statistics.median(ours):.3f} / {max(ours):.3f} | "
              f"{statistics.median(theirs):.3f} / {max(theirs):.3f} | {statistics.median(diffs):+.3f} / "
              f"{max(abs(d) for d in diffs):.3f} | {max(m['gauge'] or [0.0]) - max(e2e):+.3f} | "
              f"{before} -> {after} |")


if __name__ == "__main__":
    main()
