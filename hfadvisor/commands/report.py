"""`hfadvisor report EVAL_DIR... -o DIR`: a base model and its fine-tunes side by side, per benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import fail, say
from hfadvisor.errors import HFAdvisorError

HELP = (
    "Before/after report over `hfadvisor evaluate` outputs: one table per benchmark (categories or MMLU "
    "subjects × models, the first directory's model as the base, deltas in points), PNG plots, report.json."
)


def report(
    evaluations: Annotated[list[Path], typer.Argument(help="evaluation directories, the base model's first")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report directory")],
    label: Annotated[
        list[str] | None, typer.Option(help="a model label per directory, in order \\[default: its target model]")
    ] = None,
    safe_rate: Annotated[
        str, typer.Option(help="excluded = safe/(safe+unsafe); paper = safe/all prompts (both in report.json)")
    ] = "excluded",
    as_json: Annotated[bool, typer.Option("--json", help="also print report.json to stdout")] = False,
) -> None:
    from hfadvisor.report import report as do_report

    try:
        result = do_report(evaluations, output, labels=label, safe_rate=safe_rate)
    except HFAdvisorError as e:
        raise fail(str(e), e.exit_code) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n")
    say(f"report: {output}/report.md ({len(result.tables)} tables; base {result.base}; {', '.join(result.plots)})")


def register(app: typer.Typer) -> None:
    app.command("report", help=HELP)(report)
