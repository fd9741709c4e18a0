"""Fixtures for tests against the running lab (`python -m lab up` and a deploy first: `bash lab/deploy.sh`).

The lab is required, not optional: when it is not up these tests fail with what to run, they are never
skipped silently.
"""

import pytest
import testinfra

from lab import processes, settings


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def lab_is_up():
    down = [name for name in settings.HOSTS if processes.pid_of(name) is None]
    if down:
        pytest.fail(f"the lab is not up ({', '.join(down)} down): run `bash lab/deploy.sh` first")


def _host(name):
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(settings.SSH_CONFIG))


@pytest.fixture(scope="session")
def primary():
    return _host("primary")


@pytest.fixture(scope="session")
def standby():
    return _host("standby")
