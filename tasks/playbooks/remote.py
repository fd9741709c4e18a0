"""Execution-time I/O of the incident steps: commands on a host, files between hosts through the control
machine (the hosts cannot SSH to each other as root), and requests to the public endpoint."""

import json
import shlex
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Optional

from wirebot.common import cloudflare, layout

from tasks.core.wait import WaitTimeout, wait_for
from tasks.playbooks import model


class StepFailed(Exception):
    """A step could not reach its state; the message says what failed and what was seen."""


def sh(host, command: str, what: str, ok_codes=(0,), timeout=None):
    """Run `command` on `host` (root); the CommandOutput, or StepFailed naming `what` with the output."""
    kwargs = {"_success_exit_codes": list(ok_codes)}
    if timeout:
        kwargs["_timeout"] = timeout
    try:
        ok, output = host.run_shell_command(command, **kwargs)
    except Exception as exc:  # noqa: BLE001 - connection errors of any kind end the step
        raise StepFailed(f"{what} on {host.name}: {type(exc).__name__}: {exc}") from None
    if not ok:
        tail = "\n".join(output.output_lines[-8:])
        raise StepFailed(f"{what} on {host.name} failed:\n{tail}")
    return output


def exit_code(host, command: str, timeout=None):
    """(exit code, stdout text, stderr text) of `command`, which may fail: its code is echoed as a last
    line EXIT n (removed from the text)."""
    output = sh(host, f"{command}; echo \"EXIT $?\"", command.split()[0], timeout=timeout)
    lines = output.stdout_lines
    code = next((int(line.split()[1]) for line in reversed(lines) if line.startswith("EXIT ")), 1)
    stdout = "\n".join(line for line in lines if not line.startswith("EXIT "))
    return code, stdout, output.stderr


def fence_units_args(connector: str) -> list:
    """fence_command's --unit arguments: the connector first, then the gateway and the scoreboard (the
    units the fence key's forced command names too, tasks/provision/agent_configs.fenced_units)."""
    return [arg for unit in layout.serving_units(connector) for arg in ("--unit", unit)]


def agents(data, module: str, *args: str) -> str:
    """The shell command running `python3 -m wirebot.<module> ARGS` with the agents on PYTHONPATH (`module`
    with its room: "hosttools.merge", "standby.activation")."""
    quoted = " ".join(shlex.quote(str(a)) for a in args)
    return f"PYTHONPATH={shlex.quote(data.wirebot_agents_dir)} python3 -m wirebot.{module} {quoted}"


def last_json(text: str) -> Optional[dict]:
    """The JSON object at the end of `text` (a whole indented document or the last JSON line)."""
    text = text.strip()
    start = text.find("{")
    if start >= 0:
        try:
            value = json.loads(text[start:])
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
    from tasks.playbooks.facts import last_json as last_line

    return last_line(text.splitlines())


def ensure_folder(host, folder: str) -> None:
    """Create `folder` (0700) when it is missing; an existing folder is left exactly as it is."""
    quoted = shlex.quote(folder)
    sh(host, f"[ -d {quoted} ] || install -d -m 700 {quoted}", f"create {folder}")


def put_text(host, text: str, path: str, mode: str = "600") -> None:
    """Write `text` to `path` on `host` (atomic: a temp name, then mv)."""
    folder = str(Path(path).parent)
    ensure_folder(host, folder)
    if not host.put_file(StringIO(text), f"{path}.part"):
        raise StepFailed(f"upload of {path} to {host.name} failed")
    sh(host, f"chmod {mode} {shlex.quote(path)}.part && mv -f {shlex.quote(path)}.part {shlex.quote(path)}",
       f"install {path}")


def transfer(source_host, source: str, target_host, target: str) -> int:
    """Copy file `source` on one host to `target` on another via a local temp file; returns its size."""
    with tempfile.TemporaryDirectory(prefix="wirebot-incident-") as folder:
        local = str(Path(folder) / "copy")
        if not source_host.get_file(source, local):
            raise StepFailed(f"download of {source} from {source_host.name} failed")
        size = Path(local).stat().st_size
        folder_remote = str(Path(target).parent)
        ensure_folder(target_host, folder_remote)
        if not target_host.put_file(local, f"{target}.part"):
            raise StepFailed(f"upload of {target} to {target_host.name} failed")
        sh(target_host, f"chmod 600 {shlex.quote(target)}.part && mv -f {shlex.quote(target)}.part "
                        f"{shlex.quote(target)}", f"install {target}")
    return size


# --- the public endpoint, seen from the control machine --------------------------------------------
def _origin(headers, origin_header: str) -> Optional[str]:
    return headers.get(origin_header) if origin_header and headers is not None else None


def probe(url: str, host_header: Optional[str], origin_header: str = "", timeout: float = 5.0) -> dict:
    """One GET of the public URL: {"status", "origin", "error"}; "origin" is the answer's `origin_header`
    (setting edge_origin_header: an edge that names the origin that served it), None without one."""
    headers = {"User-Agent": "wirebot-incident", "Cache-Control": "no-cache"}
    if host_header:
        headers["Host"] = host_header
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return {"status": response.status, "origin": _origin(response.headers, origin_header), "error": None}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "origin": _origin(exc.headers, origin_header), "error": None}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"status": None, "origin": None, "error": str(getattr(exc, "reason", exc))[:200]}


def api_origins(base: str, account: str, tunnel: str, token: Optional[str], timeout: float = 5.0) -> dict:
    """Cloudflare's tunnel-connections list: {"configured", "ok", "origins", "error", "status", "retry_after"}
    (wirebot.common.cloudflare, the one client of that API, shared with the agents)."""
    return cloudflare.tunnel_origins(base, account, tunnel, token, timeout, user_agent="wirebot-incident")


def public_view(data, expected: str, probes: int) -> tuple:
    """(ok, text) of one verification round: `probes` requests plus the API (token from the secrets)."""
    from tasks.core.secrets import cloudflared_files

    answers = [probe(data.witness_public_url, data.witness_public_host_header or None, data.edge_origin_header or "")
               for _ in range(probes)]
    token_file = Path(data.secrets_dir) / "cloudflare-api-token"
    token = token_file.read_text().strip() if token_file.is_file() else None
    tunnel = cloudflared_files(data.secrets_dir, data.cloudflared_secrets)
    api = api_origins(data.witness_cloudflare_api_base, tunnel["account_tag"], tunnel["tunnel_id"], token)
    return model.served_by(answers, expected, api, data.edge_origin_header or "")


def wait_served(data, expected: str, seconds: float, probes: int) -> str:
    """Poll until the public endpoint is served by `expected` only; the verdict text, or StepFailed."""
    started, seen = time.monotonic(), {}

    def served():
        ok, seen["text"] = public_view(data, expected, probes)
        return ok

    try:
        wait_for(served, seconds, 0.5, f"the public endpoint served by {expected}")
    except WaitTimeout:
        raise StepFailed(f"the public endpoint is not served by {expected} after {seconds:.0f} s: "
                         f"{seen['text']}") from None
    return f"{seen['text']} (after {time.monotonic() - started:.1f} s)"
