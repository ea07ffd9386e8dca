"""Shared pytest configuration."""

pytest_plugins = ["fixtures_argilla", "fixtures_hub", "fixtures_tgi"]
