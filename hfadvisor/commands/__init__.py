"""CLI command groups, one module per outside system or task (hub, label, space, measure...).

Each module defines `register(app: typer.Typer) -> None`; `hfadvisor.cli` calls it for every
module found here. Keep imports of heavy or optional packages inside the command functions,
so `hfadvisor --help` stays fast and works without optional extras.
"""
