"""Shared pytest configuration: the test servers are pytest plugins from tests/servers/."""

pytest_plugins = ["tests.servers.argilla_fixtures", "tests.servers.hub_fixtures", "tests.servers.tgi"]
