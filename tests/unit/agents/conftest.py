"""Unit tests for the runtime agents: put files/agents on sys.path so ``import wirebot`` works.

Fixtures: ``fake_systemctl`` (a shell script logging its calls, unit states kept in files) and
``http_server`` (a factory of loopback HTTP servers with settable answers). Helpers in agenttest.py.
"""

import os
import sys

import pytest

AGENTS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "files", "agents"))
if AGENTS not in sys.path:
    sys.path.insert(0, AGENTS)
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import agenttest  # noqa: E402


@pytest.fixture
def fake_systemctl(tmp_path):
    return agenttest.FakeSystemctl(tmp_path / "fake-systemctl")


@pytest.fixture
def http_server():
    servers = []

    def make():
        server = agenttest.FakeHttp()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
