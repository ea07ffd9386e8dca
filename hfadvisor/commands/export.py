"""`hfadvisor export RUN_DIR -o DIR`: a run as training data (chat messages, stable splits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import fail, say
from hfadvisor.errors import HFAdvisorError

HELP = "Export a run for training: chat-format messages with stable train/validation/test splits."


def export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="export directory (new, or an earlier export)")],
    fmt: Annotated[str, typer.Option("--format", help="sft (messages, needs responses) or prompts")] = "sft",
    round_: Annotated[int | None, typer.Option("--round", help="export rounds 0..N \\[default: all]")] = None,
    splits: Annotated[str, typer.Option(help="train,validation,test fractions")] = "0.9,0.05,0.05",
    jsonl: Annotated[bool, typer.Option("--jsonl/--no-jsonl", help="also write <split>.jsonl")] = True,
    system: Annotated[str | None, typer.Option(help="system message to put first in every conversation")] = None,
) -> None:
    from hfadvisor.export import export as do_export
    from hfadvisor.export import parse_splits

    try:
        manifest = do_export(
            run_dir, output, fmt=fmt, upto=round_, splits=parse_splits(splits), jsonl=jsonl, system=system
        )
    except HFAdvisorError as e:
        raise fail(str(e), e.exit_code) from None
    counts = ", ".join(f"{k} {v}" for k, v in manifest.splits.items())
    skipped = manifest.rows_without_response
    say(f"exported {counts} to {output}" + (f" ({skipped} rows without a response left out)" if skipped else ""))


def register(app: typer.Typer) -> None:
    app.command("export", help=HELP)(export)
