"""`hfadvisor config`: every `RunConfig` key as a commented YAML file, generated like the flags.

The output is a valid `--config` file holding the defaults, so it doubles as the reference
of the YAML keys and as a starting point to edit.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from pydantic import BaseModel

from hfadvisor.commands._flags import NOT_FLAGS, FlagSet, run_flags

HEADER = (
    "# hfadvisor run configuration (`hfadvisor run --config FILE`): every key is optional, these are the defaults.\n"
    "# Flags given on the command line win over this file; the flag of each key is named after `flag:`.\n"
)


def _scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()


def _lines(model: BaseModel, path: tuple[str, ...], flags: dict[str, str], out: list[str]) -> None:
    indent = "  " * len(path)
    for name, field in type(model).model_fields.items():
        key = ".".join((*path, name))
        value = getattr(model, name)
        about = field.description or ""
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()
            out.append(f"{indent}# {about or (doc[0] if doc else name)}")
            out.append(f"{indent}{name}:")
            _lines(value, (*path, name), flags, out)
            continue
        if not path and name in NOT_FLAGS:  # shown, commented out: the command decides it
            out.append(f"{indent}# {about}\n{indent}# {name}: {_scalar(value)}")
            continue
        flag = flags.get(key, "none, YAML only")
        out.append(f"{indent}# {about}  (flag: {flag})".replace("#   (", "# ("))
        out.append(f"{indent}{name}: {_scalar(value)}")


def render() -> str:
    """The commented YAML of every RunConfig key with its default (valid as a --config file)."""
    from hfadvisor.config import RunConfig

    names: dict[str, str] = {}
    for mode in ("advisor", "baseline"):
        flagset: FlagSet = run_flags(mode)
        for flag in flagset.flags:
            if not flag.hidden:
                names.setdefault(flag.key, flag.decls[0] + ("" if mode == "advisor" else " (baseline only)"))
        for key, why in flagset.yaml_only.items():
            names.setdefault(key, f"none: {why}")
    out: list[str] = []
    _lines(RunConfig(), (), names, out)
    return HEADER + "\n".join(out) + "\n"


def config_cmd() -> None:
    sys.stdout.write(render())


def register(app: typer.Typer) -> None:
    app.command(
        "config",
        help="Print every run setting as a commented YAML file of the defaults (a starting point for --config).",
    )(config_cmd)
