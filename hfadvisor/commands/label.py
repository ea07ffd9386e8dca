"""`hfadvisor label push|pull`: human safety labels through an Argilla labelling queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import RunDirArg as RunDir
from hfadvisor.commands._common import fail, group, say
from hfadvisor.errors import ConfigError, HFAdvisorError

label_app = group(
    "label",
    "Human safety labels with Argilla: push rows to a labelling queue, pull submitted labels into the run.",
)

Dataset = Annotated[
    str | None, typer.Option("--dataset", "-d", help="Argilla dataset name (default: hfadvisor-<run id>)")
]
Workspace = Annotated[
    str | None, typer.Option("--workspace", "-w", help="Argilla workspace (default: your only workspace)")
]
ApiUrl = Annotated[
    str | None, typer.Option("--api-url", help="Argilla server URL (default: $ARGILLA_API_URL or localhost:6900)")
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="Argilla API key (default: $ARGILLA_API_KEY; prefer the variable)", show_default=False
    ),
]


@label_app.command("push", help="Send a run's rows to an Argilla dataset (only rows it does not hold yet).")
def push_cmd(
    run_dir: RunDir,
    dataset: Dataset = None,
    workspace: Workspace = None,
    rounds: Annotated[str | None, typer.Option(help="rounds to push: 5, 3-7, 3- or all (default: all)")] = None,
    all_rounds: Annotated[bool, typer.Option("--all", help="push every round (the default)")] = False,
    min_submitted: Annotated[
        int | None, typer.Option(help="submitted responses a record needs to be complete (default: 1)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="records per request (max 500)")] = 100,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    from hfadvisor.labelling.client import resolve
    from hfadvisor.labelling.push import parse_rounds, push
    from hfadvisor.rundir.store import RunStore

    try:
        if rounds and all_rounds:
            raise ConfigError("give either --rounds or --all, not both")
        store = RunStore.open(run_dir, repair=False)
        selected = parse_rounds(rounds, store.rounds_done)
        result = push(
            store,
            dataset=dataset,
            workspace=workspace,
            rounds=selected,
            min_submitted=min_submitted,
            batch_size=batch_size,
            conn=resolve(api_url, api_key),
        )
    except HFAdvisorError as e:
        raise fail(e) from None
    verb = "created" if result.created else "updated"
    say(
        f"{verb} Argilla dataset {result.dataset!r} in workspace {result.workspace!r} on {result.url}: "
        f"{result.pushed} records pushed, {result.already} already there "
        f"({result.records_per_s:.0f} records/s, {result.seconds:.1f} s in all)"
        + (
            f"; {result.without_label} rows target a category the dataset has no label for"
            if result.without_label
            else ""
        )
    )


@label_app.command("pull", help="Store submitted Argilla responses as the run's next labels version; refresh the card.")
def pull_cmd(
    run_dir: RunDir,
    dataset: Dataset = None,
    workspace: Workspace = None,
    card_template: Annotated[
        Path | None, typer.Option(help="card template to re-render README.md with (default: built-in)")
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    from hfadvisor.labelling.client import resolve
    from hfadvisor.labelling.pull import pull

    try:
        result = pull(
            run_dir, dataset=dataset, workspace=workspace, conn=resolve(api_url, api_key), card_template=card_template
        )
    except HFAdvisorError as e:
        raise fail(e) from None
    where = result.path.relative_to(Path(run_dir)) if result.path.is_relative_to(Path(run_dir)) else result.path
    state = f"labels pull {result.pull} written to {where}" if result.new else f"no new labels since pull {result.pull}"
    if not result.pull:
        say(f"no submitted responses in Argilla dataset {result.dataset!r} yet: nothing written")
        return
    say(
        f"{state}: {result.responses} submitted responses on {result.records} rows from {result.annotators} "
        f"annotators"
        + (f" ({result.foreign} records of other runs ignored)" if result.foreign else "")
        + f"; card {run_dir}/README.md updated"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(label_app, name="label")
