"""CLI command groups, one module per group (run, serve, hub, label, respond, export, evaluate, compare, space, config).

Each public module defines `register(app: typer.Typer) -> None`; `hfadvisor.cli` calls it for
every module found here. `_common` (fail/say, shared options) and `_flags` (the `run` flags
generated from `RunConfig`) are helpers, not groups. Keep imports of heavy or optional packages
inside the command functions, so `hfadvisor --help` stays fast and works without optional extras.
"""
