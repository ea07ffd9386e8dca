"""`hfadvisor run|baseline [RUN_DIR]` (flags generated from `RunConfig`) and `hfadvisor log RUN_DIR`."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hfadvisor.aio import run_cli
from hfadvisor.commands._common import err, fail, interrupted
from hfadvisor.commands._flags import run_flags, with_flags
from hfadvisor.errors import HFAdvisorError

RunDir = Annotated[Path | None, typer.Argument(help="run directory to create or resume (or use --output)")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="run directory to create or resume")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file with any RunConfig keys (flags win over it)")
]
COMMANDS = {"advisor": "run", "baseline": "baseline"}


def _rounds_on_disk(path: Path) -> int:
    rev_dir = path / "revisions"
    return max(len(list(rev_dir.glob("round-*.json"))) - 1, 0) if rev_dir.is_dir() else 0


def launch(mode: str, run_dir: Path | None, output: Path | None, config: Path | None, overrides: dict[str, Any]):
    """Plan (validates everything, writes nothing), then run with live progress; errors keep every complete round."""
    from hfadvisor import api
    from hfadvisor.progress import RichObserver

    target = output or run_dir
    if run_dir and output and run_dir != output:
        raise fail("give the run directory once: either as argument or with --output")
    if target is None:
        raise fail("where should the run go? pass --output DIR (or a run directory to resume)")
    try:
        plan = api.plan_run(target, mode=mode, config_file=config, **overrides)
        resumed = plan.store is not None
        what = "resuming" if resumed else "starting"
        done = plan.store.rounds_done - 1 if plan.store else 0
        where = ", ".join(plan.config.endpoints) if plan.config.endpoints else "the embedded model (SmolLM2-135M)"
        err.print(f"{what} {mode} run {target} at round {done + 1} of {plan.config.rounds} on {where}", markup=False)
        with RichObserver(err, prices=(plan.config.price_input, plan.config.price_output)) as observer:
            store = run_cli(api.execute(plan, observer))
    except HFAdvisorError as e:
        done = _rounds_on_disk(target)
        suffix = f" ({done} complete rounds kept in {target})" if done else ""
        raise fail(f"{e}{suffix}", e.exit_code) from None
    except KeyboardInterrupt as e:
        done = _rounds_on_disk(target)
        kept = f"{done} complete rounds kept in {target}: rerun `hfadvisor {COMMANDS[mode]} {target}` to resume"
        raise interrupted(e, kept) from None
    rows = sum(i.rows for i in store.index)
    stopped = _budget_stop(store, plan.config)
    if stopped:  # exit 0: the run is resumable with a larger --max-tokens
        err.print(stopped, markup=False)
    err.print(f"done: {store.rounds_done - 1} rounds, {rows} rows in {target} (card: {target}/README.md)", markup=False)


def _budget_stop(store: Any, config: Any) -> str | None:
    """The budget's one line when it ended the run short of its rounds (same rule as the runner's)."""
    from hfadvisor.budget import TokenBudget

    done = store.rounds_done - 1
    if config.max_tokens is None or done >= config.rounds:
        return None
    budget = TokenBudget.of(config.max_tokens, [rev.ledger for rev in store.revisions() if rev.round])
    return None if budget.allows() else budget.message(done, config.rounds)


def _prices(rev: Any, price_input: float | None, price_output: float | None) -> tuple[float | None, float | None]:
    """Prices for `log`: the flags, else those the round was run with."""
    if price_input is not None or price_output is not None:
        return price_input, price_output
    stored = rev.extra.get("prices") or {}
    return stored.get("input"), stored.get("output")


def run_command(mode: str):
    """The `run`/`baseline` callback: three fixed parameters, then one option per `RunConfig` setting."""
    flags = run_flags(mode)

    def command(*, run_dir: Path | None = None, output: Path | None = None, config: Path | None = None, **values):
        launch(mode, run_dir, output, config, flags.overrides(values))

    kw = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        inspect.Parameter("run_dir", kw, default=None, annotation=RunDir),
        inspect.Parameter("output", kw, default=None, annotation=Output),
        inspect.Parameter("config", kw, default=None, annotation=ConfigFile),
    ]
    return with_flags(command, fixed, flags)


def log_cmd(
    path: Annotated[Path, typer.Argument(help="run directory")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per round")] = False,
    price_input: Annotated[
        float | None, typer.Option(help="price per 1M input tokens (default: the price each round was run with)")
    ] = None,
    price_output: Annotated[float | None, typer.Option(help="price per 1M output tokens (same default)")] = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from hfadvisor.rundir.store import RunStore, sessions

    try:
        store = RunStore.open(path, repair=False)
    except HFAdvisorError as e:
        raise fail(e) from None
    if (price_input is not None and price_input < 0) or (price_output is not None and price_output < 0):
        raise fail("--price-input/--price-output: a price per 1M tokens is 0 or more")
    total = None
    if as_json:
        for rev in store.revisions():
            total = rev.ledger if total is None else total.plus(rev.ledger)
            pi, po = _prices(rev, price_input, price_output)
            cost, run_cost = rev.ledger.cost(pi, po), total.cost(pi, po)
            line = {
                "round": rev.round,
                "weakness": rev.weakness,
                "weaknesses": rev.weaknesses,  # one per lane (--lanes); empty before lanes
                "rows": rev.rows,
                "rejects": rev.rejects,
                "reject_reasons": rev.reject_reasons,
                "summary_source": rev.summary_source,
                "summary_note": rev.summary_note,
                "answers": {k: {"structured": c.structured, "text": c.text} for k, c in rev.ledger.by_stage.items()},
                "seconds": round(rev.timings.total, 3),
                "sha256": rev.sha256,
                "prompt_tokens": rev.ledger.prompt_tokens,
                "completion_tokens": rev.ledger.completion_tokens,
                "input_tokens_reported": rev.ledger.input_reported,
                "tokens_total": total.tokens,  # the run's, up to this round (what --max-tokens counts)
                "cost": None if cost is None else round(cost.total, 6),
                "cost_total": None if run_cost is None else round(run_cost.total, 6),  # at this round's prices
                "cost_covers": None
                if cost is None
                else ("output" if cost.input_reported == "none" else "input+output"),
            }
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{path} — {store.info.mode} run {store.info.run_id[:8]}, config {store.info.config_hash}")
    revisions = list(store.revisions())
    priced = any(_prices(rev, price_input, price_output) != (None, None) for rev in revisions)
    cols = ["round", "weakness", "rows", "rejects", "summary", "seconds", "model", "tokens in/out"]
    for col in [*cols, *(["cost", "cost (run)"] if priced else [])]:
        table.add_column(col, overflow="fold")
    for rev in revisions:
        total = rev.ledger if total is None else total.plus(rev.ledger)
        pi, po = _prices(rev, price_input, price_output)
        cost, run_cost = rev.ledger.cost(pi, po), total.cost(pi, po)
        tokens_in = "—" if rev.ledger.input_reported == "none" else str(rev.ledger.prompt_tokens)
        money = [cost.label() if cost else "—", run_cost.label() if run_cost else "—"] if priced else []
        table.add_row(
            str(rev.round),
            rev.targeted or ("(seeds)" if rev.round == 0 else "—"),
            str(rev.rows),
            str(rev.rejects),
            rev.summary_source,
            f"{rev.timings.total:.1f}",
            rev.model,
            f"{tokens_in}/{rev.ledger.completion_tokens}",
            *money,
        )
    console = Console()
    console.print(table)
    runs = sessions(store.path)
    if runs:
        table = Table(title="sessions (what each invocation spent; failed rounds included)")
        for col in ("started", "outcome", "rounds", "requests", "retries", "failed", "tokens", "message"):
            table.add_column(col, overflow="fold")
        for s in runs:
            done = s.rounds_committed
            table.add_row(
                s.started_at[:19],
                s.outcome,
                f"{done[0]}-{done[-1]}" if len(done) > 1 else (str(done[0]) if done else "none"),
                str(s.ledger.requests),
                str(s.ledger.retries),
                str(s.ledger.failures),
                str(s.ledger.completion_tokens),
                s.message,
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        help="Run (or resume) a Data Advisor run. Without --endpoint, the embedded SmolLM2 model is served locally. "
        "Every option is also a key of the --config YAML file (`hfadvisor config` prints them all).",
    )(run_command("advisor"))
    app.command("baseline", help="Run (or resume) the Self-Instruct baseline: same flags and output as `run`.")(
        run_command("baseline")
    )
    app.command("log", help="List the revisions (rounds) of a run: weakness, rows, rejects.")(log_cmd)
