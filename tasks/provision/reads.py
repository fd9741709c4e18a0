"""What the deploys' own code (not their operations) reads from each host while pyinfra prepares the
operations, gathered for every host at once, in parallel, before the first deploy runs
(tasks/core/hoststate.py). Each module says what it reads (its `reads(target)`). A read missing
there is made when the code asks for it (one round trip more): nothing depends on these lists being
complete, only the number of round trips."""

from tasks.provision import base, cloudflared, gateway, litestream, roles, trust

READERS = (base.reads, roles.reads, trust.reads, gateway.reads, litestream.reads, cloudflared.reads)


def prepare_reads(target) -> dict:
    """{"paths", "facts"} that deploy.py's code reads on `target` (its own deploys' and its peer's)."""
    merged = {"paths": [], "facts": []}
    for reads in READERS:
        for kind, items in reads(target).items():
            merged[kind] += items
    return merged
