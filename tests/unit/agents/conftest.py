"""Unit tests for the runtime agents, laid out like the package: common/, primary/, standby/, hosttools/
(``wirebot`` is importable: installed from pyproject.toml, or PYTHONPATH=files/agents).

Fixtures: ``fake_systemctl`` (a shell script logging its calls, unit states kept in files) and
``http_server`` (a factory of loopback HTTP servers with settable answers). Helpers in agenttest.py.
"""

import pytest

from . import agenttest


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
