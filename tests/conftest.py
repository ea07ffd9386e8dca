"""Shared pytest configuration: the test servers are pytest plugins from tests/servers/.

What a server needs beyond the Python packages (chromium, redis + the argilla-server venv, the
llama-server binary) is provisioned by its fixture on first use: see tests/servers/provision.py.
"""

pytest_plugins = [
    "tests.servers.argilla_fixtures",
    "tests.servers.browser",
    "tests.servers.hub_fixtures",
    "tests.servers.llama",
    "tests.servers.tgi",
]
