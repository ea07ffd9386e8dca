"""`hfadvisor hub push RUN_DIR org/name` and `hfadvisor hub pull org/name [--revision TAG] RUN_DIR`.

`hfadvisor push|pull` (the names before the `hub` group) stay as hidden aliases.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import fail, group, say
from hfadvisor.errors import HFAdvisorError

hub_app = group(
    "hub",
    "Hugging Face Hub: push a run as one commit and tag per round, pull it back to continue elsewhere.",
)
PUSH_HELP = "Push every round of a run that the Hub repo lacks: one commit and one tag (round-0007) per round."
PULL_HELP = "Restore a run from the Hub (rows, summary, pool, config) into a new directory, to continue it there."


def push(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    repo_id: Annotated[str, typer.Argument(help="Hub dataset repo, namespace/name (created private if new)")],
    public: Annotated[bool, typer.Option("--public", help="create the repo public (default: private)")] = False,
    tag_prefix: Annotated[str, typer.Option(help="tag name prefix; tags are PREFIX + 4-digit round")] = "round-",
    card_template: Annotated[
        Path | None, typer.Option(help="dataset card Jinja template the run used \\[default: built-in]")
    ] = None,
    max_attempts: Annotated[int, typer.Option(help="attempts per push on transient Hub errors")] = 5,
) -> None:
    from hfadvisor.hub.publish import PushedResponses, PushedRound, push_run

    t0 = time.monotonic()
    answers: list[PushedResponses] = []

    def report(p: PushedRound | PushedResponses) -> None:
        say(p.line(repo_id))

    def report_responses(p: PushedResponses) -> None:
        answers.append(p)
        report(p)

    try:
        pushed = push_run(
            run_dir,
            repo_id,
            private=not public,
            tag_prefix=tag_prefix,
            card_template=card_template,
            max_attempts=max_attempts,
            on_round=report,
            on_responses=report_responses,
        )
    except HFAdvisorError as e:
        raise fail(e) from None
    if not pushed:
        if not answers:
            say(f"{repo_id} already has every round of {run_dir}")
        return
    sent = sum(p.bytes for p in pushed) / 1024
    say(
        f"pushed {len(pushed)} rounds to {repo_id} ({sent:.1f} KiB, {time.monotonic() - t0:.1f}s); "
        f'load one with datasets.load_dataset("{repo_id}", revision="{pushed[-1].tag}")'
    )


def pull(
    repo_id: Annotated[str, typer.Argument(help="Hub dataset repo written by `hfadvisor hub push`")],
    run_dir: Annotated[Path, typer.Argument(help="new run directory")],
    revision: Annotated[
        str | None, typer.Option(help="tag (round-0007), branch or commit to restore \\[default: main]")
    ] = None,
) -> None:
    from hfadvisor.hub.pull import pull_run

    try:
        store = pull_run(repo_id, run_dir, revision=revision)
    except HFAdvisorError as e:
        raise fail(e) from None
    rows = sum(i.rows for i in store.index)
    cmd = "run" if store.info.mode == "advisor" else "baseline"
    say(
        f"pulled rounds 0..{store.rounds_done - 1} ({rows} rows) of run {store.info.run_id[:8]} into {run_dir}; "
        f"continue with `hfadvisor {cmd} {run_dir}` (add --push-to-hub {repo_id} to keep publishing)"
    )


hub_app.command("push", help=PUSH_HELP)(push)
hub_app.command("pull", help=PULL_HELP)(pull)


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
    app.command("push", help=PUSH_HELP + " (alias of `hub push`)", hidden=True)(push)
    app.command("pull", help=PULL_HELP + " (alias of `hub pull`)", hidden=True)(pull)
