"""Benchmark file sync's debounce: lag of an isolated change, and rsyncs per window in a burst.

``.venv/bin/python bench/filesync_bench.py [--debounce 5] [--isolated 5] [--burst-windows 3]
[--module PATH]`` runs wirebot.primary.filesync's real loop (inotify watcher, rsync into a local directory laid
out like the replica; no lab, no SSH) on a temporary tree and prints a Markdown table:

- isolated change: a file is written after a quiet debounce window; lag = write -> the new content is
  in the destination (polled every 2 ms), next to that rsync's own duration;
- burst: a change every 0.1 s for ``--burst-windows`` debounce windows; the most rsyncs that started
  within any one debounce window, and the largest lag of a change in the burst (write -> the
  destination shows it or a later change).

``--module PATH`` benchmarks another filesync.py (e.g. the previous version, from
``git show REV:files/agents/wirebot/primary/filesync.py > /tmp/filesync_old.py``) for a before/after table.
Local rsync is faster than rsync over SSH to the standby (the lab's: about 0.25 s), so add that
difference to the lags for the real transport.
"""

import argparse
import importlib.util
import os
import sys
import tempfile
import threading
import time

from wirebot.common import inotify
from wirebot.primary import filesync as current

from tasks.core.wait import WaitTimeout, wait_for


def load(path):
    """The filesync module at `path` (imported inside the wirebot package so its relative imports work)."""
    if not path:
        return current
    spec = importlib.util.spec_from_file_location("wirebot._bench_filesync", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Timed:
    """A runner recording each rsync's (start, end) on the monotonic clock."""

    def __init__(self, module):
        self.module, self.runs = module, []

    def __call__(self, argv, timeout):
        start = time.monotonic()
        result = self.module.run_command(argv, timeout)
        self.runs.append((start, time.monotonic()))
        return result


def write_and_wait(src, dest, name, content, timeout=60.0, rewrite=True):
    """Write `content` to src/name (unless `rewrite` is False: already written); seconds until
    dest/name holds it."""
    target = os.path.join(dest, name)
    started = time.monotonic()
    if rewrite:
        with open(os.path.join(src, name), "w") as handle:
            handle.write(content)

    def arrived():
        with open(target) as handle:
            return handle.read() == content

    try:
        wait_for(arrived, timeout, interval=0.002, what=f"{name} in the destination", ignore=(OSError,))
    except WaitTimeout as timed_out:
        raise SystemExit(str(timed_out)) from None
    return time.monotonic() - started


def watch_destination(path, seen, done):
    """Record (n, time) each time the destination's burst file shows a new "burst n"."""
    last = None
    while not done.is_set():
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            text = ""
        if text.startswith("burst ") and text != last:
            last = text
            seen.append((int(text.split()[1]), time.monotonic()))
        time.sleep(0.002)


def most_in_window(starts, window):
    """The most rsync starts inside any half-open interval of length `window`."""
    return max((sum(1 for t in starts if a <= t < a + window) for a in starts), default=0)


def run(module, debounce, isolated, burst_windows):
    work = tempfile.mkdtemp(prefix="filesync-bench-")
    src = os.path.join(work, "src")
    os.makedirs(src)
    dest_root = os.path.join(work, "replica")
    dest = module.remote_path(dest_root, src)
    runner = Timed(module)
    fs = module.FileSync([src], module.local_command(dest_root), debounce_seconds=debounce,
                         full_sync_seconds=3600, runner=runner)
    watcher = inotify.Watcher([src])
    stop = threading.Event()
    loop = threading.Thread(target=fs.run, args=(watcher, stop), daemon=True)
    loop.start()
    try:
        write_and_wait(src, dest, "ready", "startup")
        write_and_wait(src, dest, "isolated", "created")  # measured changes modify an existing file
        lags, rsync_times = [], []
        for i in range(isolated):
            time.sleep(debounce + 0.5)  # a quiet window before the change
            before = len(runner.runs)
            lags.append(write_and_wait(src, dest, "isolated", f"change {i}"))
            try:  # the content arrived; the rsync process is still exiting
                wait_for(lambda: len(runner.runs) > before, 5, 0.01, "the rsync to end")  # noqa: B023
            except WaitTimeout:
                pass
            rsync_times += [end - start for start, end in runner.runs[before:]]
        time.sleep(debounce + 0.5)
        first = len(runner.runs)
        written, seen = {}, []  # change n -> write time; (n shown in the destination, when)
        watching = threading.Event()
        poller = threading.Thread(target=watch_destination, args=(os.path.join(dest, "burst"), seen, watching))
        poller.start()
        until, n = time.monotonic() + burst_windows * debounce, 0
        while time.monotonic() < until:
            n += 1
            with open(os.path.join(src, "burst"), "w") as handle:
                handle.write(f"burst {n}")
            written[n] = time.monotonic()
            time.sleep(0.1)
        try:  # the last change shown (a lag past the deadline shows in the table as inf)
            wait_for(lambda: seen and seen[-1][0] >= n, 2 * debounce + 5, interval=0.01, what="the last burst")
        except WaitTimeout:
            pass
        watching.set()
        poller.join()
        burst_lags = [next((when for shown, when in seen if shown >= k), float("inf")) - at
                      for k, at in written.items()]
        starts = [start for start, _ in runner.runs[first:]]
    finally:
        stop.set()
        loop.join(5)
        watcher.close()
    return {"lags": lags, "rsync": rsync_times, "burst_changes": n, "burst_rsyncs": len(starts),
            "per_window": most_in_window(starts, debounce), "burst_max_lag": max(burst_lags)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debounce", type=float, default=5.0, help="debounce_seconds (default 5, as deployed)")
    parser.add_argument("--isolated", type=int, default=5, help="isolated changes measured")
    parser.add_argument("--burst-windows", type=int, default=3, help="length of the burst, in debounce windows")
    parser.add_argument("--module", help="benchmark this filesync.py instead of the checkout's")
    args = parser.parse_args(argv)
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # the agent's JSON log lines
    try:
        result = run(load(args.module), args.debounce, args.isolated, args.burst_windows)
    finally:
        sys.stdout.close()
        sys.stdout = stdout
    lags, rsync = sorted(result["lags"]), sorted(result["rsync"])
    print(f"file sync, debounce {args.debounce:g} s, local rsync ({args.module or 'this checkout'})\n")
    print("| measure | value |\n|---|---|")
    print(f"| isolated change lag, median (n={len(lags)}) | {lags[len(lags) // 2]:.3f} s |")
    print(f"| isolated change lag, max | {lags[-1]:.3f} s |")
    print(f"| rsync duration, median (n={len(rsync)}) | {rsync[len(rsync) // 2]:.3f} s |" if rsync
          else "| rsync duration | - |")
    print(f"| burst: changes (every 0.1 s for {args.burst_windows} windows) | {result['burst_changes']} |")
    print(f"| burst: rsyncs | {result['burst_rsyncs']} |")
    print(f"| burst: most rsyncs in one debounce window | {result['per_window']} |")
    print(f"| burst: largest lag of a change | {result['burst_max_lag']:.3f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
