"""`run`/`baseline` flags generated from `RunConfig`: one edit to the model adds the flag, its help and its YAML key.

Each field becomes `--kebab-case` (nested models `--sampling.generate.max-new-tokens`), its
`Field(description=...)` the help, `Literal` the choices, bools `--x/--no-x`, lists repeatable.
Every flag defaults to None, so an absent flag never overrides the YAML file or the stored
config of a resumed run; the help shows RunConfig's default instead. `RENAMED` keeps the flag
names that predate the generation working; a type the CLI cannot express is YAML-only.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from rich.markup import escape

from hfadvisor.config import RunConfig

# Field path → option declarations kept from the hand-written CLI (the generated name stays an alias).
RENAMED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("endpoints",): ("--endpoint", "-e", "--endpoints"),
    ("hub_private",): ("--hub-private/--public",),
    ("hub_tag_prefix",): ("--tag-prefix", "--hub-tag-prefix"),
    ("retry", "max_attempts"): ("--max-attempts", "--retry.max-attempts"),
    ("summary_sees_examples",): ("--summary-sees-examples/--summary-weakness-only",),
}
# Extra help for a renamed flag whose name no longer says what the field's description says.
HELP_SUFFIX: dict[tuple[str, ...], str] = {
    ("endpoints",): "; repeat to balance over several",
    ("hub_private",): " (--public: anyone can read it)",
}
# Set by the command itself, never by a flag.
NOT_FLAGS: frozenset[str] = frozenset({"mode"})
# A field that only one mode uses: hidden (and ignored, as before) in the other mode's command.
MODE_ONLY: dict[str, str] = {"pipeline_depth": "baseline", "summary_sees_examples": "advisor"}
SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Flag:
    """One generated option: where its value goes in the config, and how typer declares it."""

    path: tuple[str, ...]
    param: str
    decls: tuple[str, ...]
    annotation: Any
    help: str
    panel: str
    hidden: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class FlagSet:
    """The flags of one command, plus the YAML-only fields and why they have no flag."""

    flags: tuple[Flag, ...]
    yaml_only: dict[str, str]

    def overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """Flag values → nested config overrides (absent flags and hidden ones left out)."""
        out: dict[str, Any] = {}
        for flag in self.flags:
            value = values.get(flag.param)
            if value is None or flag.hidden or (isinstance(value, list | tuple) and not value):
                continue
            node = out
            for part in flag.path[:-1]:
                node = node.setdefault(part, {})
            node[flag.path[-1]] = list(value) if isinstance(value, list | tuple) else value
        return out


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _cli_type(tp: Any) -> Any | None:
    """The type typer parses the flag as (always optional: None = not given), or None if it has no flag form."""
    if tp in SCALARS:
        return tp | None
    if get_origin(tp) is Literal and all(isinstance(v, str) for v in get_args(tp)):
        return typing.Optional[tp]  # noqa: UP045 - `Literal[...] | None` is not a type typer reads
    if get_origin(tp) is list and len(get_args(tp)) == 1 and get_args(tp)[0] in SCALARS:
        return list[get_args(tp)[0]] | None  # type: ignore[misc]
    return None


def _default_text(value: Any, decls: tuple[str, ...]) -> str:
    if value is None or value == []:
        return ""
    if isinstance(value, bool):
        on, _, off = decls[0].partition("/")
        return f" \\[default: {on if value else off}]"
    return f" \\[default: {escape(str(value))}]"


def _panel(model: type[BaseModel], prefix: tuple[str, ...]) -> str:
    if prefix:
        doc = inspect.getdoc(model) or ""
        return f"{'.'.join(prefix)}: {doc.splitlines()[0]}" if doc else ".".join(prefix)
    return ""


def _walk(
    model: type[BaseModel], default: BaseModel, prefix: tuple[str, ...], mode: str, found: list[Flag], skip: dict
) -> None:
    operational = set(getattr(model, "OPERATIONAL", ()))
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        key = ".".join(path)
        if not prefix and name in NOT_FLAGS:
            continue
        tp = _unwrap_optional(field.annotation)
        value = getattr(default, name)
        if _is_model(tp):
            _walk(tp, value, path, mode, found, skip)
            continue
        cli_type = _cli_type(tp)
        if cli_type is None:
            skip[key] = f"type {tp!r} has no flag form: set it in the YAML file (--config)"
            continue
        kebab = ".".join(p.replace("_", "-") for p in path)
        if path in RENAMED:
            decls = RENAMED[path]
        elif tp is bool:  # --metrics/--no-metrics, --validation.reject-refusals/--validation.no-reject-refusals
            head, _, last = kebab.rpartition(".")
            decls = (f"--{kebab}/--{head + '.' if head else ''}no-{last}",)
        else:
            decls = (f"--{kebab}",)
        if prefix:
            panel = _panel(model, prefix)
        elif name in operational:
            panel = "Operational (may change when a run is resumed)"
        else:
            panel = "Method (recorded in the run; resuming with other values is refused)"
        described = escape(field.description or "") + HELP_SUFFIX.get(path, "")
        help_text = (described + _default_text(value, decls)).strip()
        found.append(
            Flag(
                path=path,
                param="__".join(path),
                decls=decls,
                annotation=cli_type,
                help=help_text,
                panel=panel,
                hidden=not prefix and MODE_ONLY.get(name, mode) != mode,
            )
        )


def run_flags(mode: str, model: type[RunConfig] = RunConfig) -> FlagSet:
    """Every `RunConfig` setting as a flag of the `run` (mode advisor) or `baseline` command."""
    found: list[Flag] = []
    skip: dict[str, str] = {}
    _walk(model, model(), (), mode, found, skip)
    return FlagSet(tuple(found), skip)


def with_flags(func: Callable[..., None], fixed: list[inspect.Parameter], flags: FlagSet) -> Callable[..., None]:
    """Give `func(**kwargs)` a signature typer reads: the fixed parameters, then one option per flag."""
    params = list(fixed)
    for flag in flags.flags:
        option = typer.Option(*flag.decls, help=flag.help, rich_help_panel=flag.panel or None, hidden=flag.hidden)
        params.append(
            inspect.Parameter(
                flag.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[flag.annotation, option]
            )
        )
    func.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return func
