"""Shared by the unit tests of lab/ modules: the stand-in scripts as subprocesses, stopped after the test."""

import os
import subprocess

import pytest

from lab.loopback import standin_argv


@pytest.fixture
def spawn(tmp_path):
    """Factory: start a stand-in script (lab/standins/SCRIPT); its output goes to a file; terminated after
    the test."""
    procs = []

    def start(script: str, *args, env=None):
        log = open(tmp_path / f"{script}-{len(procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(standin_argv(script, *args), stdout=log, stderr=log,
                                env={**os.environ, **(env or {})})
        proc.log_path = log.name
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
