"""What the deploy reads from a host, in one round trip per host, kept until something runs on that host.

pyinfra runs one remote command per fact, one after the other (files.put alone reads three, a
systemd.service two), and each operation waits for every host: a no-change deploy of both lab hosts
was ~110 commands per host. Here operations and deploy code *declare* what they will read (`want`, or
the `declares` decorator of an operation) while pyinfra prepares the operations; the first read on a
host (`path`, `unit`, `fact`) then runs ONE command (FactBatch) for everything declared on that host:
the stats and sha256 of all managed paths (PathStats), the state of all managed units (UnitStates) and
every other declared fact, each processed by its own fact class. `prefetch` does it for all hosts at
once, in parallel.

Correctness never rests on the declarations:
- a read of something not declared (or not gathered yet) gathers it then, in its own round trip;
- whatever was read is forgotten as soon as any operation has run a command on that host (pyinfra's
  OperationMeta.executed of its completed operations): the next read gathers again, so an operation
  never decides on what the host looked like before an earlier one changed it. A no-change deploy runs
  no command, so it reads each host once.
Nothing here writes to a host.
"""

import json
import secrets
import shlex
import stat as stat_module
import weakref

import gevent
import gevent.lock
from pyinfra.api import FactBase, StringCommand
from pyinfra.context import ContextObject, ctx_host

RUNNING_STATES = ("running", "waiting", "exited", "listening", "mounted")  # pyinfra's SystemdStatus
ENABLED_STATES = ("enabled", "static")  # pyinfra's SystemdEnabled


class PathStats(FactBase):
    """{path: {"kind": "d" (directory) | "f" (regular file) | "l" (link) | "o" (other), "user", "group",
    "mode" (octal, e.g. "750"), "sha256" (regular files, when `digests`)}} for those of `paths` that
    exist (links are not followed), in one command."""

    @staticmethod
    def default():
        return {}  # no output at all: none of them exists

    def command(self, paths, digests=False):
        quoted = " ".join(shlex.quote(p) for p in paths)
        command = f"stat -c 's %f %U %G %a %n' -- {quoted} 2>/dev/null"
        if digests:  # regular files only (never a FIFO, a device or through a link); OpenSSL's SHA-256 uses
            # the CPU's SHA instructions (4x coreutils' on the lab's 39 MB Litestream binary)
            command += (f"; if command -v openssl >/dev/null 2>&1; then hash='openssl dgst -sha256 -r'; "
                        f"else hash='sha256sum'; fi; find {quoted} -maxdepth 0 -type f -exec $hash {{}} + 2>/dev/null")
        return command + "; true"

    def process(self, output):
        result = {}
        for line in output:
            if line.startswith("s "):
                _, raw, user, group, mode, path = line.split(" ", 5)
                fmt = stat_module.S_IFMT(int(raw, 16))
                kind = {stat_module.S_IFDIR: "d", stat_module.S_IFREG: "f", stat_module.S_IFLNK: "l"}.get(fmt, "o")
                result[path] = {"kind": kind, "user": user, "group": group, "mode": mode, "sha256": None}
            elif len(line) > 66 and line[64:66] in ("  ", " *") and result.get(line[66:], {}).get("kind") == "f":
                result[line[66:]]["sha256"] = line[:64]
        return result


class UnitStates(FactBase):
    """{unit: {"running": bool, "enabled": bool, "loaded": bool}} for systemd `units` (".service" added
    when no type is given), in one command; running and enabled as pyinfra's SystemdStatus and
    SystemdEnabled count them; a unit systemd does not know is neither."""

    @staticmethod
    def default():
        return {}

    def requires_command(self, *args, **kwargs):
        return "systemctl"

    def command(self, units):
        names = " ".join(shlex.quote(unit_name(u)) for u in units)
        return f"systemctl show --property Id,LoadState,SubState,UnitFileState -- {names}"

    def process(self, output):
        result, block = {}, {}
        for line in [*output, ""]:
            key, sep, value = line.strip().partition("=")
            if sep:
                block[key] = value
                continue
            if block.get("Id"):
                result[block["Id"]] = {"running": block.get("SubState") in RUNNING_STATES,
                                       "enabled": block.get("UnitFileState") in ENABLED_STATES,
                                       "loaded": block.get("LoadState") == "loaded"}
            block = {}
        return result


def unit_name(unit: str) -> str:
    """`unit` with ".service" when it names no type (as systemd.service does)."""
    return unit if "." in unit.rsplit("@", 1)[-1] else f"{unit}.service"


def _raw(command) -> str:
    return command.get_raw_value() if isinstance(command, StringCommand) else str(command)


class FactBatch(FactBase):
    """Several facts in one command: `specs` [(fact class, kwargs)] -> [value], each from its own class's
    command and process; one whose command fails, prints nothing or lacks its required command gets the
    class's default (as pyinfra's get_fact gives). `marker` (random) separates their outputs."""

    @staticmethod
    def default():
        return None  # no answer at all (the host failed): the caller reads each fact alone

    def command(self, specs, marker):
        parts = []
        for index, (cls, kwargs) in enumerate(specs):
            fact = cls()
            command = _raw(fact.command(**kwargs))
            required = fact.requires_command(**kwargs) if hasattr(fact, "requires_command") else None
            if required:
                command = (f"if command -v {shlex.quote(_raw(required))} >/dev/null 2>&1; then {command}; "
                           f"else exit 127; fi")
            parts.append(f"echo '{marker} {index}'; ( {command} ) 2>/dev/null; printf '\\n{marker} end %s\\n' $?")
        return "; ".join(parts)

    def process(self, output):
        return list(output)  # split by `split_batch`, which knows the specs and the marker


MISSING = object()  # a fact the batch's output does not carry (no answer): read alone


def split_batch(specs, marker: str, lines) -> list:
    """The value of each fact of a FactBatch from its output lines (MISSING for one it does not carry)."""
    values, current, index = [MISSING] * len(specs), None, None
    for line in lines:
        if line.startswith(marker + " "):
            word = line[len(marker) + 1:].split(" ")
            if word[0] == "end" and index is not None:
                if current and current[-1] == "":
                    current = current[:-1]  # the newline the separator added
                cls, kwargs = specs[index]
                ok = word[1:] == ["0"] and current
                values[index] = cls().process(current) if ok else _default(cls)
                index = current = None
            elif word[0].isdigit():
                index, current = int(word[0]), []
        elif current is not None:
            current.append(line)
    return values


def _default(cls):
    return cls().default()


def _key(cls, kwargs) -> tuple:
    return cls, json.dumps(kwargs, sort_keys=True, default=str)


class _HostReads:
    """One host's declared reads {key: spec}, what was read {key: value} (valid while `executed` is
    unchanged) and the keys some caller has looked up (`looked`). Keys: ("path", path), ("unit", unit)
    or (fact class, its kwargs as JSON)."""

    def __init__(self):
        self.declared, self.values, self.looked, self.executed = {}, {}, set(), 0
        self.lock = gevent.lock.BoundedSemaphore()  # one gather at a time (pyinfra prepares hosts in parallel)


_READS = weakref.WeakKeyDictionary()  # host -> _HostReads (one pyinfra state's hosts; tests make many)


def _host(target):
    """The Host object itself (`target`, or the current host when None or pyinfra's `host` proxy)."""
    return ctx_host.get() if target is None or isinstance(target, ContextObject) else target


def _reads(target) -> _HostReads:
    target = _host(target)
    reads = _READS.get(target)
    if reads is None:
        reads = _READS[target] = _HostReads()
    return reads


def _executed_ops(target) -> int:
    """How many operations have run a command on `target` so far (pyinfra's OperationMeta.executed)."""
    target = _host(target)
    ops = target.state.ops.get(target, {})
    return sum(1 for data in ops.values() if data.operation_meta.is_complete() and data.operation_meta.executed)


def _specs(paths=(), units=(), facts=()) -> dict:
    specs = {("path", p): None for p in paths}
    specs.update({("unit", unit_name(u)): None for u in units})
    specs.update({_key(cls, kwargs): (cls, kwargs) for cls, kwargs in facts})
    return specs


def want(target=None, paths=(), units=(), facts=()) -> None:
    """Declare what will be read on `target` (default: the current host): paths (stats and sha256),
    systemd units, and other facts as (class, kwargs)."""
    _reads(target).declared.update(_specs(paths, units, facts))


def _fresh(target) -> _HostReads:
    """The host's reads, what was read forgotten if an operation has run a command there since."""
    reads = _reads(target)
    executed = _executed_ops(target)
    if executed != reads.executed:
        reads.values, reads.executed = {}, executed
    return reads


def _gather(target, asked: dict) -> None:
    """Read, in one command, what is `asked` and every declared read no caller has looked up yet (those
    looked up before an invalidation are read again when asked again), unless already known."""
    target = _host(target)
    reads = _reads(target)
    reads.declared.update(asked)
    with reads.lock:
        reads = _fresh(target)
        wanted = {k: spec for k, spec in reads.declared.items() if k not in reads.looked or k in asked}
        missing = {k: spec for k, spec in wanted.items() if k not in reads.values}
        if missing:
            reads.values.update(_read(target, missing))


def _read(target, missing: dict) -> dict:
    """{key: value} of `missing` on `target`, in one FactBatch (a fact its output lacks: read alone)."""
    paths = sorted(k[1] for k in missing if k[0] == "path")
    units = sorted(k[1] for k in missing if k[0] == "unit")
    facts = [(k, spec) for k, spec in missing.items() if spec is not None]
    specs = [spec for _, spec in facts]
    if paths:
        specs.append((PathStats, {"paths": paths, "digests": True}))
    if units:
        specs.append((UnitStates, {"units": units}))
    marker = f"@@wirebot-{secrets.token_hex(8)}"
    lines = target.get_fact(FactBatch, specs=specs, marker=marker)
    values = split_batch(specs, marker, lines or [])
    values = [target.get_fact(cls, **kwargs) if value is MISSING else value
              for (cls, kwargs), value in zip(specs, values)]
    result = {key: value for (key, _), value in zip(facts, values)}
    rest = values[len(facts):]
    if paths:
        stats = rest.pop(0) or {}
        result.update({("path", p): stats.get(p) for p in paths})
    if units:
        states = rest.pop(0) or {}
        result.update({("unit", u): states.get(u, {"running": False, "enabled": False, "loaded": False})
                       for u in units})
    return result


def _lookup(target, asked: dict):
    (key,) = asked
    reads = _fresh(target)
    if key not in reads.values:
        _gather(target, asked)
    reads = _reads(target)
    reads.looked.add(key)
    return reads.values[key]


def path(target, name: str):
    """{"kind", "user", "group", "mode", "sha256"} of `name` on `target`, or None when it does not exist."""
    return _lookup(target, _specs(paths=[name]))


def unit(target, name: str) -> dict:
    """{"running", "enabled", "loaded"} of the systemd unit `name` on `target`."""
    return _lookup(target, _specs(units=[name]))


def fact(target, cls, **kwargs):
    """`target.get_fact(cls, **kwargs)`, from what was gathered if it is still valid."""
    return _lookup(target, _specs(facts=[(cls, kwargs)]))


def prefetch(hosts, reads) -> None:
    """Gather, on each of `hosts` in parallel, what `reads(host)` returns ({"paths", "units", "facts"})
    and everything already declared there."""
    greenlets = [gevent.spawn(_gather, target, _specs(**reads(target))) for target in hosts]
    gevent.joinall(greenlets)  # best effort: a host that cannot answer fails where its deploy reads it


def declares(reads):
    """Decorate a pyinfra operation: `reads(**arguments)` (the operation's own arguments, without the
    global ones) returns what it will read ({"paths", "units", "facts"}), declared on the current host
    when the operation is called, so that the first read gathers it with everything else."""
    import functools
    import inspect

    def wrap(op):
        signature = inspect.signature(op._inner)

        @functools.wraps(op)
        def call(*args, **kwargs):
            own = {k: v for k, v in kwargs.items() if k in signature.parameters}
            bound = signature.bind_partial(*args, **own)
            bound.apply_defaults()
            want(None, **reads(**bound.arguments))
            return op(*args, **kwargs)

        call._inner = op._inner
        return call

    return wrap
