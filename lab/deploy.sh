#!/usr/bin/env bash
# The main job on the lab, from a fresh Debian 12 machine (as root): install what is needed, bring the
# lab up, provision both lab hosts with deploy.py. Idempotent: run it again and nothing changes.
# --fresh: take the lab down first, so that the hosts start from a clean rootfs (what CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in debootstrap systemd-nspawn ssh rsync sqlite3 python3 promtool npm nft; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ] || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq debootstrap systemd-container openssh-client rsync sqlite3 python3 python3-venv \
    iproute2 procps npm nftables >/dev/null  # npm: the lab's gateway bundle comes from the npm registry;
  # nftables: lab/chaos.py's loss and delay rules in the namespaces (the edge's and the monitor's have no host)
  # prometheus: promtool and the server binary (tests/unit/test_prometheus.py checks the alert rules and
  # scrapes a channel listener with the shipped job); its own
  # service is not wanted on the control machine, hence no recommends and the disable below.
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi
if [ ! -x .venv/bin/pyinfra ] || [ pyproject.toml -nt .venv/.installed ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi

if [ "${1:-}" = "--fresh" ]; then
  .venv/bin/python -m lab down
fi
.venv/bin/python -m lab up
.venv/bin/pyinfra -y lab/inventory.py deploy.py
