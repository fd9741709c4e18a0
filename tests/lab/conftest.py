"""Fixtures for tests against the running lab (`python -m lab up` and a deploy first: `bash lab/deploy.sh`).

The lab is required, not optional: when it is not up these tests fail with what to run, they are never
skipped silently.
"""

import pytest
import testinfra

from lab import processes, settings
from lab.baseline import ensure_clean_lab

# Modules that crash hosts, fail over or recover run after the ones that check the freshly deployed lab;
# each starts from a fresh lab itself. test_zz_lab_down runs last.
DISRUPTIVE = ("test_agents_", "test_fencing", "test_playbooks_", "test_drill")


def _order(item) -> int:
    name = item.fspath.basename
    if name.startswith("test_zz_"):
        return 2
    return 1 if name.startswith(DISRUPTIVE) else 0


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: _order(item) if "tests/lab/" in str(item.fspath) else -1)


@pytest.fixture(scope="session", autouse=True)
def lab_is_up():
    """The lab must be up; the read-only modules then need it freshly deployed (reset when it is not)."""
    down = [name for name in settings.PROCESS_HOSTS if processes.pid_of(name) is None]
    if down:
        pytest.fail(f"the lab is not up ({', '.join(down)} down): run `bash lab/deploy.sh` first")
    ensure_clean_lab()


def _host(name):
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(settings.SSH_CONFIG))


@pytest.fixture(scope="session")
def primary():
    return _host("primary")


@pytest.fixture(scope="session")
def standby():
    return _host("standby")
