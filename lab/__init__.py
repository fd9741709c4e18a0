"""The two-host lab: real Debian 12 systemd hosts (primary, standby) and a Cloudflare stand-in (edge).

Test equipment only: nothing under lab/ is ever deployed to a real host. `python -m lab up` builds it.
"""
