"""The lab's private network: one bridge on this machine, one network namespace per lab host.

Each namespace gets a veth pair whose host end joins the bridge; nothing is routed off this machine (the
namespaces have no default route). All steps are idempotent and tolerate leftovers of an interrupted run.
"""

from lab import settings
from lab.shell import ok, run


def veth(name: str) -> str:
    """This machine's end of lab host `name`'s veth pair."""
    return settings.netns(name)[:15]


def bridge_exists() -> bool:
    return ok(["ip", "link", "show", settings.BRIDGE])


def namespace_exists(name: str) -> bool:
    return ok(["ip", "netns", "exec", settings.netns(name), "true"])


def ensure_bridge() -> None:
    """The bridge, up, with this machine's lab address."""
    if not bridge_exists():
        run(["ip", "link", "add", settings.BRIDGE, "type", "bridge"])
    cidr = f"{settings.BRIDGE_ADDRESS}/{settings.PREFIX_LEN}"
    if cidr not in run(["ip", "-o", "addr", "show", "dev", settings.BRIDGE]).stdout:
        run(["ip", "addr", "add", cidr, "dev", settings.BRIDGE])
    run(["ip", "link", "set", settings.BRIDGE, "up"])


def namespace_ready(name: str) -> bool:
    """True when `name`'s namespace exists with its address on eth0 and its veth on the bridge."""
    if not namespace_exists(name):
        return False
    inside = run(["ip", "-n", settings.netns(name), "-o", "addr", "show", "dev", "eth0"], check=False).stdout
    outside = run(["ip", "-o", "link", "show", veth(name)], check=False).stdout
    return f"{settings.address(name)}/" in inside and f"master {settings.BRIDGE}" in outside


def ensure_namespace(name: str) -> None:
    """Namespace `name` with eth0 at its lab address, its veth on the bridge; rebuilt when half-made."""
    if namespace_ready(name):
        return
    remove_namespace(name)
    ns = settings.netns(name)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", veth(name), "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "link", "set", veth(name), "master", settings.BRIDGE, "up"])
    run(["ip", "-n", ns, "addr", "add", f"{settings.address(name)}/{settings.PREFIX_LEN}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def remove_namespace(name: str) -> None:
    """Remove `name`'s namespace and its veth (deleting either end removes the pair)."""
    if ok(["ip", "link", "show", veth(name)]):
        run(["ip", "link", "del", veth(name)], check=False)
    if namespace_exists(name) or ok(["test", "-e", f"/run/netns/{settings.netns(name)}"]):
        run(["ip", "netns", "del", settings.netns(name)], check=False)


def remove_bridge() -> None:
    if bridge_exists():
        run(["ip", "link", "del", settings.BRIDGE], check=False)


# --- Partitions, for failure scenarios: drop traffic between two lab hosts, both ways. ---

def cut(a: str, b: str) -> None:
    """Blackhole traffic between lab hosts `a` and `b` (each still reaches every other host)."""
    for src, dst in ((a, b), (b, a)):
        run(["ip", "-n", settings.netns(src), "route", "replace", "blackhole", f"{settings.address(dst)}/32"])


def heal(a: str, b: str) -> None:
    """Undo cut(a, b)."""
    for src, dst in ((a, b), (b, a)):
        run(["ip", "-n", settings.netns(src), "route", "del", "blackhole", f"{settings.address(dst)}/32"], check=False)


def drop(src: str, dst: str) -> None:
    """One-way loss: packets from lab host `src` to `dst` are dropped (replies the other way still go)."""
    run(["ip", "-n", settings.netns(src), "route", "replace", "blackhole", f"{settings.address(dst)}/32"])


def undrop(src: str, dst: str) -> None:
    """Undo drop(src, dst)."""
    run(["ip", "-n", settings.netns(src), "route", "del", "blackhole", f"{settings.address(dst)}/32"], check=False)
