"""`chromium`: the path of Debian's chromium for the Playwright browser tests, installed on first use.

Playwright's own browser download cannot work on these machines, so the tests drive the
distribution's chromium (`.ci/browser-setup.sh`, run once through tests/servers/provision.py).
"""

from __future__ import annotations

import pytest

from tests.servers.provision import provided


@pytest.fixture(scope="session")
def chromium(pytestconfig: pytest.Config) -> str:
    """Path of the chromium binary (apt-installed the first time; fails with one line when it cannot be)."""
    return provided(pytestconfig, "chromium")[-1]
