"""`hfadvisor compare RUN... -o DIR`: Markdown report with plots over several runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import fail, say
from hfadvisor.errors import HFAdvisorError

HELP = "Compare runs: Markdown report with PNG plots (coverage, diversity, categories, safety)."


def compare(
    runs: Annotated[list[Path], typer.Argument(help="two or more run directories")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report directory")],
    label: Annotated[list[str] | None, typer.Option(help="a label per run, in order")] = None,
    categories: Annotated[
        Path | None, typer.Option(help="file: one category per line \\[default: union of the runs' summaries]")
    ] = None,
    evaluation: Annotated[
        list[str] | None,
        typer.Option(help="LABEL=DIR of an `hfadvisor evaluate` output (also read from RUN/evaluations/*)"),
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="compare rounds 0..N of every run \\[default: all]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="also print the figures as JSON")] = False,
) -> None:
    from hfadvisor.compare import compare as do_compare

    try:
        report = do_compare(
            runs, output, labels=label, categories_file=categories, evaluations=evaluation or [], upto=rounds
        )
    except HFAdvisorError as e:
        raise fail(str(e), e.exit_code) from None
    if as_json:
        sys.stdout.write(json.dumps(report.runs, indent=1) + "\n")
    say(f"report: {output}/report.md ({', '.join(report.plots)})")


def register(app: typer.Typer) -> None:
    app.command("compare", help=HELP)(compare)
