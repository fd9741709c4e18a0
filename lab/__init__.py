"""The two-host lab: real Debian 12 systemd hosts (primary, standby) and a Cloudflare stand-in (edge).

Test equipment only: nothing under lab/ is ever deployed to a real host. `python -m lab up` builds it.
What lab tests and benches share lives here too (they never import each other): client.py (HTTP, the
edge), agents.py (the agents' API and journals), commands.py (pyinfra and `python -m lab` runs),
baseline.py (is the lab clean, reset it, recover the primary), channel_attacker.py with channel_probe.py,
loopback.py (free ports, stand-ins as subprocesses); every stand-in is in standins/. Polling everywhere:
tasks/core/wait.py's wait_for.
"""
