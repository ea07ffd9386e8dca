"""Shared pytest configuration: the test servers are pytest plugins from tests/servers/.

What a server needs beyond the Python packages (chromium, redis + the argilla-server venv, the
llama-server binary) is provisioned after collection when a collected test needs it: see tests/servers/provision.py.
"""

pytest_plugins = [  # provision first: the fixture modules import it
    "tests.servers.provision",
    "tests.servers.argilla_fixtures",
    "tests.servers.browser",
    "tests.servers.hub_fixtures",
    "tests.servers.llama",
    "tests.servers.tgi",
]
