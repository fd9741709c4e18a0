"""Running commands on this machine for the lab, with errors that show what failed."""

import subprocess
from typing import List, Sequence


class LabError(Exception):
    """A lab step failed; the message names the step and the command's own error."""


def run(argv: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run `argv`; on failure with `check`, raise LabError carrying the command's stderr."""
    result = subprocess.run(list(argv), text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"command failed ({result.returncode}): {' '.join(argv)}\n{detail}")
    return result


def ok(argv: List[str]) -> bool:
    """True when `argv` exits 0 (used for probes such as 'does this link exist')."""
    return subprocess.run(argv, capture_output=True).returncode == 0
