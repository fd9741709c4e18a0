"""What the drill reads and writes on the hosts, over pyinfra's connection (run at execution time).

The snippets run with the hosts' system python3 (3.9, standard library): the scoreboard's events.db is
opened read-only; the fire-drill log line is appended with a single write (O_APPEND).
"""

import json
import shlex

_ROWS_BY_TAG = """
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=30)
rows = db.execute("SELECT id, received_by FROM events WHERE payload LIKE ? OR id = ?",
                  ("%" + sys.argv[2] + "%", sys.argv[3])).fetchall()
print(json.dumps(rows))
"""

_APPEND = """
import os, sys
os.makedirs(os.path.dirname(sys.argv[1]), mode=0o755, exist_ok=True)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
try:
    os.write(fd, sys.stdin.buffer.read())
finally:
    os.close(fd)
"""


class HostError(Exception):
    """A command on a host failed; the message names the host and the error."""


def run(host, command: str, timeout: int = 120, stdin: str = None) -> str:
    """stdout of `command` on `host`; HostError when it fails."""
    kwargs = {"_timeout": timeout}
    if stdin is not None:
        kwargs["_stdin"] = stdin
    ok, output = host.run_shell_command(command, **kwargs)
    if not ok:
        raise HostError(f"{host.name}: {command.split(' ', 1)[0]} failed: {output.stderr.strip()[-400:]}")
    return output.stdout


def python(host, code: str, *args, timeout: int = 120, stdin: str = None) -> str:
    argv = " ".join(shlex.quote(str(a)) for a in args)
    return run(host, f"python3 -c {shlex.quote(code)} {argv}", timeout, stdin)


def rows_tagged(host, db: str, tag: str, event_id: str = "") -> list:
    """[(id, received_by)] of the events in `db` whose payload carries `tag` (plus `event_id`)."""
    return [tuple(row) for row in json.loads(python(host, _ROWS_BY_TAG, db, tag, event_id or "-") or "[]")]


def append_line(host, path: str, line: str) -> None:
    """Append `line` + newline to `path` on `host` (folder made 0755, file 0644)."""
    python(host, _APPEND, path, stdin=line.rstrip("\n") + "\n")

