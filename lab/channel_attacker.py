"""An attacker of the agents' channel, as lab tests and benches play it: lab/channel_probe.py run from a
lab host's network namespace (so its connections come from that host's address), identities stolen
from a host, and a well-formed stranger identity pinned nowhere."""

import json
import subprocess
import sys
from pathlib import Path

from lab import machines, settings
from lab.shell import LabError

PROBE = Path(__file__).resolve().with_name("channel_probe.py")
AGENT_KEYS = "/etc/wirebot/agent-keys"  # group_data agent_keys_dir


def probe_argv(where):
    """argv running lab/channel_probe.py with the network of lab host `where` ("root": this machine)."""
    argv = [sys.executable, "-I", str(PROBE)]  # -I: not lab/ on sys.path (its secrets.py is no stdlib's)
    return argv if where == "root" else ["ip", "netns", "exec", settings.netns(where), *argv]


def probe(where, spec, timeout=120):
    """Run one channel_probe.py spec from `where`'s address; its JSON answer."""
    result = subprocess.run(probe_argv(where), input=json.dumps(spec), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise LabError(f"channel_probe.py from {where} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def identity(name):
    """Copies of lab host `name`'s agent key, certificate and pinned peer certificate on this machine (an
    attacker who stole them): {"cert_file", "key_file", "peer_cert_file"} for channel_probe.py."""
    folder = settings.STATE_DIR / "test-identities" / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = {}
    for field, file in (("cert_file", "agent.crt"), ("key_file", "agent.key"), ("peer_cert_file", "peer.crt")):
        text = machines.ssh(name, f"cat {AGENT_KEYS}/{file}").stdout
        path = folder / file
        path.write_text(text)
        path.chmod(0o600)
        out[field] = str(path)
    return out


def stranger_identity():
    """A key and self-signed certificate made on this machine with the deploy's own command: well-formed,
    but pinned nowhere."""
    from tasks.core.ops import tls_keypair_command

    folder = settings.STATE_DIR / "test-identities" / "stranger"
    key, cert = folder / "agent.key", folder / "agent.crt"
    if not (key.exists() and cert.exists()):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["sh", "-c", tls_keypair_command(str(key), str(cert), "wirebot-primary")], check=True)
    return {"cert_file": str(cert), "key_file": str(key)}
