"""tasks/failover.py when the standby cannot activate: the playbook gives up after
failover_activation_wait and says the agent's own activation error (the failed step and its message, as
the agent's status has it), not only "not ACTIVE". The standby's litestream is replaced for the run by
one that fails as a full disk does; the module restores it and resets the lab (destructive)."""

from lab.baseline import ensure_clean_lab, fresh_lab
from lab.commands import pyinfra
from lab.machines import ssh

LITESTREAM = "/usr/local/bin/litestream"  # group_data/all.py: litestream_binary
FULL_DISK = "write /data/wirebot/scoreboard/.events.db.wirebot-restore: no space left on device"


def test_failover_prints_the_agents_activation_error_when_it_gives_up():
    ensure_clean_lab()
    ssh("standby", f"mv {LITESTREAM} {LITESTREAM}.real && printf '#!/bin/sh\\necho \"{FULL_DISK}\" >&2\\n"
                   f"exit 1\\n' > {LITESTREAM} && chmod 755 {LITESTREAM}")
    try:
        result = pyinfra("--data", "failover_activation_wait=15", "lab/inventory.py", "tasks/failover.py")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-3000:]
        assert "not ACTIVE after 15s; the agent's activation error: restore: litestream restore of" in output, \
            output[-3000:]
        assert "no space left on device" in output and "attempts)" in output
    finally:
        ssh("standby", f"mv -f {LITESTREAM}.real {LITESTREAM}", check=False)
        fresh_lab()
