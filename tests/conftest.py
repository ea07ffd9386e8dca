"""Shared pytest configuration."""

pytest_plugins = ["fixtures_argilla"]
