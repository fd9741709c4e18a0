"""The custom pyinfra operations, table-driven the way pyinfra tests its own (tests/test_operations.py with
tests/operations/<module.op>/*.json there): each case gives the host's facts, the operation's arguments,
the exact commands it must yield and whether anything changes (no command: the operation is a no-op, so
a second deploy changes nothing). The operation's body runs against a fake host that answers facts only
from the case (a read the case does not list fails, like pyinfra's "Missing test fact data").

Operations: managed_file, secret_file, managed_template, absent, service, attributes, ssh_keypair,
authorized_key_line (tasks/core/ops.py) and incident_step (tasks/playbooks/incident_step.py)."""

import hashlib
from io import BytesIO
from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand, OperationError, StringCommand
from pyinfra.context import ctx_host, ctx_state

from tasks.core import hoststate, ops
from tasks.playbooks import timeline
from tasks.playbooks.incident_step import Step, incident_step
from tasks.playbooks.model import Refusal
from tasks.playbooks.remote import StepFailed

# --- the harness ------------------------------------------------------------------------------------


class FakeHost:
    """A host whose facts come from a case: {"paths": {path: stats or None}, "units": {unit: state},
    "<FactClass>": {"k=v, k2=v2": value}}. Every read must be listed (None: absent)."""

    def __init__(self, name, facts):
        self.name, self.facts, self.logs = name, facts, []
        self.state = SimpleNamespace(ops={})  # no operation has run a command here (hoststate's cache key)
        self.data = SimpleNamespace()

    def log(self, text, log_func=None):
        self.logs.append(text)

    def get_temp_filename(self, key=None):
        return "_tempfile_"

    def get_fact(self, cls, **kwargs):
        if cls is hoststate.FactBatch:
            return None  # "no answer": hoststate then reads each fact alone, through the calls below
        if cls is hoststate.PathStats:
            return {p: self._listed("paths", p) for p in kwargs["paths"] if self._listed("paths", p) is not None}
        if cls is hoststate.UnitStates:
            return {u: self._listed("units", u) for u in kwargs["units"]}
        key = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        return self._listed(cls.__name__, key)

    def _listed(self, kind, key):
        table = self.facts.get(kind, {})
        if key not in table:
            raise KeyError(f"missing test fact data: {kind} {key!r} on {self.name}")
        return table[key]


def normalize(command):
    """A yielded command as the tables write it: text, ["upload", content, dest] or [function, args, kwargs]
    (a Step argument as "<step KEY>")."""
    if isinstance(command, str):
        return command
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FileUploadCommand):
        src = command.src
        return ["upload", src.getvalue().decode() if isinstance(src, BytesIO) else str(src), command.dest]
    if isinstance(command, FunctionCommand):
        args = [f"<step {a.key}>" if isinstance(a, Step) else a for a in command.args]
        return [command.function.__name__, args, command.kwargs]
    raise AssertionError(f"not a command: {command!r}")


def run_op(op, case, executing=False):
    """(commands as the tables write them, the hosts) of `op`'s body on a fake host with the case's facts."""
    hosts = {name: FakeHost(name, facts) for name, facts in case.get("other_hosts", {}).items()}
    target = FakeHost("host", case.get("facts", {}))
    kwargs = {k: (hosts[v[6:]] if isinstance(v, str) and v.startswith("@host:") else v)
              for k, v in case.get("kwargs", {}).items()}
    if "key_from" in kwargs:
        other, *rest = kwargs["key_from"]
        kwargs["key_from"] = (hosts[other], *rest)
    state = SimpleNamespace(is_executing=executing)
    with ctx_state.use(state), ctx_host.use(target):
        commands = [normalize(c) for c in op._inner(*case.get("args", []), **kwargs)]
    return commands, target


def check(op, case, executing=False):
    """Run one case: its exception, or its exact commands and its change flag."""
    if "exception" in case:
        kind, message = case["exception"]
        with pytest.raises(kind, match=message):
            run_op(op, case, executing)
        return None
    commands, target = run_op(op, case, executing)
    assert commands == case["commands"]
    assert bool(commands) == case["changes"], "a case with no command changes nothing, and only then"
    return target


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def f(user="root", group="root", mode="644", content=None):
    """A regular file's stats as PathStats gives them."""
    return {"kind": "f", "user": user, "group": group, "mode": mode, "sha256": sha(content) if content else None}


def d(user="root", group="root", mode="755"):
    return {"kind": "d", "user": user, "group": group, "mode": mode, "sha256": None}


def ids(table):
    return [case["name"] for case in table]


# --- managed_file -------------------------------------------------------------------------------------

TEXT = "interval_seconds: 1\n"
DEST, TEMP = "/etc/wirebot/standby.yml", "/etc/wirebot/.standby.yml.wirebot-new"
MOVE = f"chown root:root -- {TEMP} && chmod 644 -- {TEMP} && mv -f -- {TEMP} {DEST}"

MANAGED_FILE = [
    {"name": "new file, folder there: uploaded beside it, then owner, mode and one move",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST},
     "facts": {"paths": {DEST: None, "/etc/wirebot": d()}},
     "commands": [["upload", TEXT, TEMP], MOVE], "changes": True},
    {"name": "in place (same sha256, owner, mode): nothing",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST},
     "facts": {"paths": {DEST: f(content=TEXT), "/etc/wirebot": d()}},
     "commands": [], "changes": False},
    {"name": "folder missing: made first",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST},
     "facts": {"paths": {DEST: None, "/etc/wirebot": None}},
     "commands": ["mkdir -p -- /etc/wirebot", ["upload", TEXT, TEMP], MOVE], "changes": True},
    {"name": "other content: the new version replaces it whole",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST},
     "facts": {"paths": {DEST: f(content="old\n"), "/etc/wirebot": d()}},
     "commands": [["upload", TEXT, TEMP], MOVE], "changes": True},
    {"name": "same content, wrong mode: chmod in place only",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST},
     "facts": {"paths": {DEST: f(mode="666", content=TEXT), "/etc/wirebot": d()}},
     "commands": [f"chmod 644 -- {DEST}"], "changes": True},
    {"name": "same content, wrong owner: chown in place only",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST, "user": "wirebot", "group": "wirebot"},
     "facts": {"paths": {DEST: f(content=TEXT), "/etc/wirebot": d()}},
     "commands": [f"chown wirebot:wirebot -- {DEST}"], "changes": True},
    {"name": "a leading zero in the mode is the same mode",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST, "mode": "0644"},
     "facts": {"paths": {DEST: f(content=TEXT), "/etc/wirebot": d()}},
     "commands": [], "changes": False},
    {"name": "private mode: uploaded into an empty file made with its owner and mode first",
     "kwargs": {"src": BytesIO(b"k"), "dest": "/etc/wirebot/key", "user": "wirebot", "group": "wirebot",
                "mode": "640"},
     "facts": {"paths": {"/etc/wirebot/key": None, "/etc/wirebot": d()}},
     "commands": ["rm -f -- /etc/wirebot/.key.wirebot-new && install -m 640 -o wirebot -g wirebot /dev/null "
                  "/etc/wirebot/.key.wirebot-new",
                  ["upload", "k", "/etc/wirebot/.key.wirebot-new"],
                  "chown wirebot:wirebot -- /etc/wirebot/.key.wirebot-new && chmod 640 -- "
                  "/etc/wirebot/.key.wirebot-new && mv -f -- /etc/wirebot/.key.wirebot-new /etc/wirebot/key"],
     "changes": True},
    {"name": "a path with a space is quoted",
     "kwargs": {"src": BytesIO(b"x"), "dest": "/srv/my dir/a.txt"},
     "facts": {"paths": {"/srv/my dir/a.txt": f(mode="600", content="x"), "/srv/my dir": d()}},
     "commands": ["chmod 644 -- '/srv/my dir/a.txt'"], "changes": True},
    {"name": "dest is a folder: an error naming it, before anything changes",
     "kwargs": {"src": BytesIO(TEXT.encode()), "dest": DEST},
     "facts": {"paths": {DEST: d(), "/etc/wirebot": d()}},
     "exception": (OperationError, "host: /etc/wirebot/standby.yml exists and is not a regular file")},
]


@pytest.mark.parametrize("case", MANAGED_FILE, ids=ids(MANAGED_FILE))
def test_managed_file(case):
    target = check(ops.managed_file, case)
    if target:
        assert target.logs == []  # not a secret: nothing said


# --- secret_file and managed_template (wrappers: the managed_file they ask for, then its commands) -------

def run_wrapper(monkeypatch, wrapper, case):
    """Call `wrapper` with the case's kwargs; the managed_file it asks for runs its body on the fake host.
    Returns (managed_file's kwargs, the case checked as for managed_file)."""
    asked = {}
    real = ops.managed_file

    def managed_file(name=None, **kwargs):
        asked.update(kwargs)
        return real._inner(**kwargs)

    monkeypatch.setattr(ops, "managed_file", managed_file)
    recorded = SimpleNamespace(_inner=lambda **kwargs: wrapper(**kwargs))
    target = check(recorded, case)
    return asked, target


SECRET = "s3cret-token\n"
SECRET_DEST, SECRET_TEMP = "/run/wirebot/token", "/run/wirebot/.token.wirebot-new"
SECRET_FILE = [
    {"name": "new secret: 0600 root by default, its empty file made before the upload",
     "kwargs": {"src": BytesIO(SECRET.encode()), "dest": SECRET_DEST},
     "facts": {"paths": {SECRET_DEST: None, "/run/wirebot": d(mode="700")}},
     "commands": [f"rm -f -- {SECRET_TEMP} && install -m 600 -o root -g root /dev/null {SECRET_TEMP}",
                  ["upload", SECRET, SECRET_TEMP],
                  f"chown root:root -- {SECRET_TEMP} && chmod 600 -- {SECRET_TEMP} && mv -f -- {SECRET_TEMP} "
                  f"{SECRET_DEST}"],
     "changes": True, "mode": "600"},
    {"name": "in place: nothing (compared by hash, never diffed)",
     "kwargs": {"src": BytesIO(SECRET.encode()), "dest": SECRET_DEST},
     "facts": {"paths": {SECRET_DEST: f(mode="600", content=SECRET), "/run/wirebot": d(mode="700")}},
     "commands": [], "changes": False, "mode": "600"},
    {"name": "readable by others on the host: back to 0600 in place",
     "kwargs": {"src": BytesIO(SECRET.encode()), "dest": SECRET_DEST},
     "facts": {"paths": {SECRET_DEST: f(mode="644", content=SECRET), "/run/wirebot": d(mode="700")}},
     "commands": [f"chmod 600 -- {SECRET_DEST}"], "changes": True, "mode": "600"},
    {"name": "for a service user, with its group and mode",
     "kwargs": {"src": BytesIO(SECRET.encode()), "dest": SECRET_DEST, "user": "wirebot", "group": "wirebot",
                "mode": "0640"},
     "facts": {"paths": {SECRET_DEST: f(mode="640", content="old\n"), "/run/wirebot": d(mode="700")}},
     "commands": [f"rm -f -- {SECRET_TEMP} && install -m 640 -o wirebot -g wirebot /dev/null {SECRET_TEMP}",
                  ["upload", SECRET, SECRET_TEMP],
                  f"chown wirebot:wirebot -- {SECRET_TEMP} && chmod 640 -- {SECRET_TEMP} && mv -f -- "
                  f"{SECRET_TEMP} {SECRET_DEST}"],
     "changes": True, "mode": "0640"},
]


@pytest.mark.parametrize("case", SECRET_FILE, ids=ids(SECRET_FILE))
def test_secret_file(monkeypatch, case):
    asked, target = run_wrapper(monkeypatch, ops.secret_file, case)
    assert asked["secret"] is True and asked["mode"] == case["mode"]
    said = "\n".join(target.logs)
    assert SECRET.strip() not in said  # the content is never in the log
    assert (f"Will write secret {SECRET_DEST} (content not shown)" in said) == (["upload", SECRET, SECRET_TEMP]
                                                                              in case["commands"])


TEMPLATE_DEST, TEMPLATE_TEMP = "/etc/wirebot/replicator.yml", "/etc/wirebot/.replicator.yml.wirebot-new"
RENDERED = "epoch: 1\nname: primary\n"
MANAGED_TEMPLATE = [
    {"name": "rendered here, uploaded when the host lacks it",
     "kwargs": {"data": {"epoch": 1, "who": "primary"}},
     "facts": {"paths": {TEMPLATE_DEST: None, "/etc/wirebot": d()}},
     "commands": [["upload", RENDERED, TEMPLATE_TEMP],
                  f"chown root:root -- {TEMPLATE_TEMP} && chmod 644 -- {TEMPLATE_TEMP} && mv -f -- {TEMPLATE_TEMP} "
                  f"{TEMPLATE_DEST}"], "changes": True},
    {"name": "the host holds the rendering: nothing",
     "kwargs": {"data": {"epoch": 1, "who": "primary"}},
     "facts": {"paths": {TEMPLATE_DEST: f(content=RENDERED), "/etc/wirebot": d()}},
     "commands": [], "changes": False},
    {"name": "other data renders other content: uploaded",
     "kwargs": {"data": {"epoch": 2, "who": "primary"}},
     "facts": {"paths": {TEMPLATE_DEST: f(content=RENDERED), "/etc/wirebot": d()}},
     "commands": [["upload", "epoch: 2\nname: primary\n", TEMPLATE_TEMP],
                  f"chown root:root -- {TEMPLATE_TEMP} && chmod 644 -- {TEMPLATE_TEMP} && mv -f -- {TEMPLATE_TEMP} "
                  f"{TEMPLATE_DEST}"], "changes": True},
]


@pytest.mark.parametrize("case", MANAGED_TEMPLATE, ids=ids(MANAGED_TEMPLATE))
def test_managed_template(monkeypatch, tmp_path, case):
    template = tmp_path / "replicator.yml.j2"
    template.write_text("epoch: {{ epoch }}\nname: {{ who }}\n")
    data = case["kwargs"]["data"]
    case = {**case, "kwargs": {"name": "config", "src": str(template), "dest": TEMPLATE_DEST, **data}}
    asked, _ = run_wrapper(monkeypatch, ops.managed_template, case)
    assert (asked["user"], asked["group"], asked["mode"]) == ("root", "root", "644")


# --- absent, service, attributes --------------------------------------------------------------------------

ABSENT = [
    {"name": "none there: nothing", "kwargs": {"paths": ["/etc/old.conf", "/srv/old"]},
     "facts": {"paths": {"/etc/old.conf": None, "/srv/old": None}}, "commands": [], "changes": False},
    {"name": "those present, in one rm", "kwargs": {"paths": ["/etc/old.conf", "/srv/gone", "/srv/old"]},
     "facts": {"paths": {"/etc/old.conf": f(), "/srv/gone": None, "/srv/old": d()}},
     "commands": ["rm -rf -- /etc/old.conf /srv/old"], "changes": True},
    {"name": "a link is removed, not followed; odd names quoted", "kwargs": {"paths": ["/etc/a link", "/x;y"]},
     "facts": {"paths": {"/etc/a link": {"kind": "l", "user": "root", "group": "root", "mode": "777",
                                         "sha256": None}, "/x;y": f()}},
     "commands": ["rm -rf -- '/etc/a link' '/x;y'"], "changes": True},
]


@pytest.mark.parametrize("case", ABSENT, ids=ids(ABSENT))
def test_absent(case):
    check(ops.absent, case)


def unit_state(running, enabled, loaded=True):
    return {"running": running, "enabled": enabled, "loaded": loaded}


SERVICE = [
    {"name": "stopped, wanted running: start", "kwargs": {"unit": "wirebot-replicator", "running": True},
     "facts": {"units": {"wirebot-replicator.service": unit_state(False, True)}},
     "commands": ["systemctl start wirebot-replicator.service"], "changes": True},
    {"name": "running and enabled as wanted: nothing",
     "kwargs": {"unit": "wirebot-replicator", "running": True, "enabled": True},
     "facts": {"units": {"wirebot-replicator.service": unit_state(True, True)}}, "commands": [], "changes": False},
    {"name": "neither: start then enable", "kwargs": {"unit": "litestream", "running": True, "enabled": True},
     "facts": {"units": {"litestream.service": unit_state(False, False)}},
     "commands": ["systemctl start litestream.service", "systemctl enable litestream.service"], "changes": True},
    {"name": "the standby's copy: stop and disable",
     "kwargs": {"unit": "cloudflared-wirebot", "running": False, "enabled": False},
     "facts": {"units": {"cloudflared-wirebot.service": unit_state(True, True)}},
     "commands": ["systemctl stop cloudflared-wirebot.service", "systemctl disable cloudflared-wirebot.service"],
     "changes": True},
    {"name": "None leaves that side alone", "kwargs": {"unit": "wirebot-standby", "enabled": True},
     "facts": {"units": {"wirebot-standby.service": unit_state(False, False)}},
     "commands": ["systemctl enable wirebot-standby.service"], "changes": True},
    {"name": "a unit with its type keeps it; unknown to systemd counts as stopped",
     "kwargs": {"unit": "wirebot-drill.timer", "running": True},
     "facts": {"units": {"wirebot-drill.timer": unit_state(False, False, loaded=False)}},
     "commands": ["systemctl start wirebot-drill.timer"], "changes": True},
]


@pytest.mark.parametrize("case", SERVICE, ids=ids(SERVICE))
def test_service(case):
    check(ops.service, case)


ATTRIBUTES = [
    {"name": "all as wanted: nothing",
     "kwargs": {"specs": [("/data/wirebot", "wirebot", "wirebot", "750"), ("/etc/wirebot", "root", "root", "0755")]},
     "facts": {"paths": {"/data/wirebot": d("wirebot", "wirebot", "750"), "/etc/wirebot": d()}},
     "commands": [], "changes": False},
    {"name": "one command per distinct owner and per distinct mode",
     "kwargs": {"specs": [("/data/a", "wirebot", "wirebot", "750"), ("/data/b", "wirebot", "wirebot", "750"),
                          ("/data/c", "root", "root", "700")]},
     "facts": {"paths": {"/data/a": d("root", "root", "755"), "/data/b": d("wirebot", "wirebot", "755"),
                         "/data/c": d("wirebot", "root", "700")}},
     "commands": ["chown wirebot:wirebot -- /data/a", "chown root:root -- /data/c", "chmod 750 -- /data/a /data/b"],
     "changes": True},
    {"name": "a missing path: an error naming it, before anything changes",
     "kwargs": {"specs": [("/data/a", "root", "root", "700"), ("/data/missing", "root", "root", "700")]},
     "facts": {"paths": {"/data/a": d("wirebot", "wirebot", "755"), "/data/missing": None}},
     "exception": (OperationError, "host: /data/missing missing")},
]


@pytest.mark.parametrize("case", ATTRIBUTES, ids=ids(ATTRIBUTES))
def test_attributes(case):
    check(ops.attributes, case)


# --- ssh_keypair, authorized_key_line ---------------------------------------------------------------------

KEY = "/root/.ssh/wirebot_fence"
SSH_KEYPAIR = [
    {"name": "absent: its folder 0700, then one ssh-keygen", "kwargs": {"path": KEY, "comment": "wirebot-fence"},
     "facts": {"paths": {KEY: None}},
     "commands": [f"install -d -m 700 $(dirname {KEY})",
                  f"ssh-keygen -q -t ed25519 -N '' -C wirebot-fence -f {KEY}"], "changes": True},
    {"name": "there: made once, never replaced", "kwargs": {"path": KEY, "comment": "wirebot-fence"},
     "facts": {"paths": {KEY: f(mode="600")}}, "commands": [], "changes": False},
    {"name": "comment and path quoted", "kwargs": {"path": "/home/w b/.ssh/id", "comment": "fence from standby"},
     "facts": {"paths": {"/home/w b/.ssh/id": None}},
     "commands": ["install -d -m 700 $(dirname '/home/w b/.ssh/id')",
                  "ssh-keygen -q -t ed25519 -N '' -C 'fence from standby' -f '/home/w b/.ssh/id'"], "changes": True},
]


@pytest.mark.parametrize("case", SSH_KEYPAIR, ids=ids(SSH_KEYPAIR))
def test_ssh_keypair(case):
    check(ops.ssh_keypair, case)


AUTH = "/root/.ssh/authorized_keys"
MARKER = "wirebot-fence"
LINE = 'restrict,command="/usr/local/sbin/wirebot-fence" ssh-ed25519 AAAAC3Nz wirebot-fence'
PUBKEY = "ssh-ed25519 AAAAC3Nz wirebot-fence"
OPTIONS = 'restrict,command="/usr/local/sbin/wirebot-fence"'
LINES_KEY = f"marker={MARKER}, path={AUTH}"


def write_line(line, owner="root", mode="600", dir_mode="700", path=AUTH, folder="/root/.ssh"):
    return (f"install -d -m {dir_mode} -o {owner} -g {owner} {folder} && touch {path} && "
            f"grep -v -F -- {MARKER} {path} > {path}.tmp; printf '%s\\n' '{line}' >> {path}.tmp && "
            f"chmod {mode} {path}.tmp && chown {owner}:{owner} {path}.tmp && mv {path}.tmp {path}")


AUTHORIZED_KEY_LINE = [
    {"name": "exactly our line, file root 0600: nothing", "kwargs": {"path": AUTH, "marker": MARKER, "line": LINE},
     "facts": {"PublicKeyLines": {LINES_KEY: [LINE]}, "paths": {AUTH: f(mode="600")}},
     "commands": [], "changes": False},
    {"name": "no line yet: written (other lines kept)", "kwargs": {"path": AUTH, "marker": MARKER, "line": LINE},
     "facts": {"PublicKeyLines": {LINES_KEY: []}, "paths": {AUTH: f(mode="600")}},
     "commands": [write_line(LINE)], "changes": True},
    {"name": "an older key under the marker: replaced", "kwargs": {"path": AUTH, "marker": MARKER, "line": LINE},
     "facts": {"PublicKeyLines": {LINES_KEY: ["ssh-ed25519 OLD wirebot-fence"]}, "paths": {AUTH: f(mode="600")}},
     "commands": [write_line(LINE)], "changes": True},
    {"name": "our line twice: rewritten to once", "kwargs": {"path": AUTH, "marker": MARKER, "line": LINE},
     "facts": {"PublicKeyLines": {LINES_KEY: [LINE, LINE]}, "paths": {AUTH: f(mode="600")}},
     "commands": [write_line(LINE)], "changes": True},
    {"name": "right line, file readable by others: rewritten 0600",
     "kwargs": {"path": AUTH, "marker": MARKER, "line": LINE},
     "facts": {"PublicKeyLines": {LINES_KEY: [LINE]}, "paths": {AUTH: f(mode="644")}},
     "commands": [write_line(LINE)], "changes": True},
    {"name": "a service user's file, its owner and modes",
     "kwargs": {"path": "/home/wirebot/.ssh/authorized_keys", "marker": MARKER, "line": LINE, "owner": "wirebot"},
     "facts": {"PublicKeyLines": {f"marker={MARKER}, path=/home/wirebot/.ssh/authorized_keys": [LINE]},
               "paths": {"/home/wirebot/.ssh/authorized_keys": f(user="root", mode="600")}},
     "commands": [write_line(LINE, owner="wirebot", path="/home/wirebot/.ssh/authorized_keys",
                             folder="/home/wirebot/.ssh")], "changes": True},
    {"name": "key read from the other host, already authorized: nothing",
     "kwargs": {"path": AUTH, "marker": MARKER, "key_from": ("standby", "/root/.ssh/wirebot_fence.pub", OPTIONS)},
     "other_hosts": {"standby": {"PublicKey": {"path=/root/.ssh/wirebot_fence.pub": PUBKEY}}},
     "facts": {"PublicKeyLines": {LINES_KEY: [f"{OPTIONS} {PUBKEY}"]}, "paths": {AUTH: f(mode="600")}},
     "commands": [], "changes": False},
    {"name": "key read from the other host, not authorized yet: written",
     "kwargs": {"path": AUTH, "marker": MARKER, "key_from": ("standby", "/root/.ssh/wirebot_fence.pub", OPTIONS)},
     "other_hosts": {"standby": {"PublicKey": {"path=/root/.ssh/wirebot_fence.pub": PUBKEY}}},
     "facts": {"PublicKeyLines": {LINES_KEY: []}, "paths": {AUTH: None}},
     "commands": [write_line(LINE)], "changes": True},
    {"name": "the other host's key is made earlier in this deploy: read when this operation runs",
     "kwargs": {"path": AUTH, "marker": MARKER, "key_from": ("standby", "/root/.ssh/wirebot_fence.pub", OPTIONS)},
     "other_hosts": {"standby": {"PublicKey": {"path=/root/.ssh/wirebot_fence.pub": None}}},
     "facts": {"PublicKeyLines": {LINES_KEY: []}},
     "commands": [["install", [], {}]], "changes": True},
]


@pytest.mark.parametrize("case", AUTHORIZED_KEY_LINE, ids=ids(AUTHORIZED_KEY_LINE))
def test_authorized_key_line(case):
    check(ops.authorized_key_line, case)


# --- incident_step: one playbook step, decided from its live facts ----------------------------------------

class Boom(Exception):
    pass


def raises(exc):
    def check():
        raise exc
    return check


def step_of(check, skip=None):
    return Step(playbook="recovery", number=3, key="merge", title="Merge the standby's writes", check=check,
                run=lambda todo: f"did {todo}", skip=skip, explain=lambda: "merged already")


INCIDENT_STEP = [
    {"name": "its state holds: nothing", "step": step_of(lambda: None),
     "commands": [], "changes": False, "planned": ("already", "merged already")},
    {"name": "work to do: one timed FunctionCommand running it", "step": step_of(lambda: "merge 3 rows"),
     "commands": [["_execute", ["<step merge>", "merge 3 rows"], {}]], "changes": True,
     "planned": ("planned", "merge 3 rows")},
    {"name": "skipped (stop_after): nothing, said so", "step": step_of(lambda: "merge", skip=lambda: "stop_after=2"),
     "commands": [], "changes": False, "planned": ("skipped", "stop_after=2")},
    {"name": "a refusal becomes a refused operation, never a traceback",
     "step": step_of(raises(Refusal("two connectors serve"))),
     "commands": [["_refuse", ["<step merge>", "refused", "two connectors serve"], {}]], "changes": True,
     "planned": ("planned", "refused: two connectors serve")},
    {"name": "facts that cannot be read fail the step",
     "step": step_of(raises(StepFailed("ssh to the standby timed out"))),
     "commands": [["_refuse", ["<step merge>", "failed", "reading the facts failed: ssh to the standby timed out"],
                   {}]], "changes": True, "planned": None},
    {"name": "a surprise while planning is raised (a bug shows in --dry)", "step": step_of(raises(Boom("bug"))),
     "exception": (Boom, "bug")},
]


@pytest.mark.parametrize("case", INCIDENT_STEP, ids=ids(INCIDENT_STEP))
def test_incident_step_planning(case):
    timeline.clear()
    try:
        check(incident_step, {**case, "args": [case["step"]]})
        if case.get("planned"):
            (record,) = timeline.planned("recovery")
            assert (record.status, record.detail, record.host) == (*case["planned"], "host")
        assert timeline.records() == []  # planning records nothing as done
    finally:
        timeline.clear()


INCIDENT_STEP_EXECUTING = [
    {"name": "its state holds: recorded as already, nothing run", "step": step_of(lambda: None),
     "commands": [], "changes": False, "recorded": ("already", "merged already")},
    {"name": "skipped: recorded, nothing run", "step": step_of(lambda: "merge", skip=lambda: "stop_after=2"),
     "commands": [], "changes": False, "recorded": ("skipped", "stop_after=2")},
    {"name": "work to do: the FunctionCommand (it records when it runs)", "step": step_of(lambda: "merge 3 rows"),
     "commands": [["_execute", ["<step merge>", "merge 3 rows"], {}]], "changes": True, "recorded": None},
    {"name": "a surprise at execution fails this step, not the run", "step": step_of(raises(Boom("bug"))),
     "commands": [["_refuse", ["<step merge>", "failed", "checking failed: Boom: bug"], {}]], "changes": True,
     "recorded": None},
]


@pytest.mark.parametrize("case", INCIDENT_STEP_EXECUTING, ids=ids(INCIDENT_STEP_EXECUTING))
def test_incident_step_executing(case):
    timeline.clear()
    try:
        check(incident_step, {**case, "args": [case["step"]]}, executing=True)
        records = [(r.status, r.detail) for r in timeline.records("recovery")]
        assert records == ([case["recorded"]] if case["recorded"] else [])
        assert timeline.planned("recovery") == []
    finally:
        timeline.clear()


def test_every_table_has_a_case_that_changes_nothing_or_is_refused():
    """Idempotence in the tables: each operation has a case where its state holds and it yields nothing."""
    for table in (MANAGED_FILE, SECRET_FILE, MANAGED_TEMPLATE, ABSENT, SERVICE, ATTRIBUTES, SSH_KEYPAIR,
                  AUTHORIZED_KEY_LINE, INCIDENT_STEP, INCIDENT_STEP_EXECUTING):
        assert any(case.get("changes") is False for case in table)
        assert any(case.get("changes") is True for case in table)
