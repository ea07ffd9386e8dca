"""`hfadvisor` command line: a thin layer over `hfadvisor.api`.

Every user-fixable problem ends as one line on stderr and exit code 2; Ctrl-C exits 130
with every complete round kept and the run resumable.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hfadvisor.errors import HFAdvisorError

app = typer.Typer(
    name="hfadvisor",
    help="Build safety-alignment datasets with the Data Advisor loop; every round a dataset revision.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

# ---------------------------------------------------------------- shared options
RunDir = Annotated[Path | None, typer.Argument(help="run directory to create or resume (or use --output)")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="run directory to create or resume")]
ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file with any RunConfig keys")]
Endpoint = Annotated[
    list[str] | None,
    typer.Option("--endpoint", "-e", help="TGI / OpenAI-compatible base URL; repeat to balance over several"),
]
Api = Annotated[str | None, typer.Option(help="tgi (native /generate API) or chat (/v1/chat/completions)")]
Rounds = Annotated[int | None, typer.Option(help="total generated rounds \\[default: 3]")]
BatchSize = Annotated[int | None, typer.Option(help="generations per round \\[default: 12]")]
Examples = Annotated[int | None, typer.Option(help="pool examples per prompt \\[default: 3 advisor, 5 baseline]")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="safety, skills, or a preset YAML file")]
SeedSummary = Annotated[Path | None, typer.Option(help="file: one seed summary line (category) per line")]
SeedPool = Annotated[Path | None, typer.Option(help="file: one seed query per line ('category<TAB>query' allowed)")]
SummaryExamples = Annotated[
    bool | None,
    typer.Option(
        "--summary-sees-examples/--summary-weakness-only",
        help="summary update sees the new examples (paper) or only the weakness (reference code)",
    ),
]
PromptStyle = Annotated[str | None, typer.Option(help="completion (few-shot) or instruct \\[default: by --api]")]
Model = Annotated[str | None, typer.Option(help="model name for chat endpoints; recorded in rows")]
ChatTemplate = Annotated[
    str | None, typer.Option(help="tgi api: render prompts with this Jinja chat template file, or 'server'")
]
Concurrency = Annotated[
    int | None,
    typer.Option(
        help="max requests in flight; lowered automatically while the endpoint answers overloaded \\[default: 16]"
    ),
]
Timeout = Annotated[float | None, typer.Option(help="seconds per request \\[default: 120]")]
MaxAttempts = Annotated[int | None, typer.Option(help="attempts per call before giving up \\[default: 8]")]
Seed = Annotated[int | None, typer.Option(help="seed for exemplar sampling and generation \\[default: 0]")]
PipelineDepth = Annotated[
    int | None,
    typer.Option(help="baseline: rounds generating at once; round r sees the pool of r-depth \\[default: 1]"),
]
CardTemplate = Annotated[Path | None, typer.Option(help="dataset card Jinja template \\[default: built-in]")]
PushToHub = Annotated[
    str | None, typer.Option(help="Hub dataset repo (org/name): push every round as its own commit and tag")
]
Public = Annotated[bool | None, typer.Option("--public", help="create the Hub repo public (default: private)")]
TagPrefix = Annotated[str | None, typer.Option(help="Hub tag prefix \\[default: round-]")]
LabelEvery = Annotated[int | None, typer.Option(help="push new rows to Argilla every N rounds")]
ArgillaDataset = Annotated[str | None, typer.Option(help="Argilla dataset name for labelling")]
ArgillaWorkspace = Annotated[str | None, typer.Option(help="Argilla workspace")]
UseLabels = Annotated[
    bool | None, typer.Option("--use-labels", help="feed pulled human labels into the weakness prompt")
]
Metrics = Annotated[bool | None, typer.Option("--metrics/--no-metrics", help="per-round metrics in the card")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _launch(mode: str, run_dir: Path | None, output: Path | None, config: Path | None, overrides: dict[str, Any]):
    from hfadvisor import api
    from hfadvisor.progress import RichObserver

    target = output or run_dir
    if run_dir and output and run_dir != output:
        raise _fail("give the run directory once: either as argument or with --output")
    if target is None:
        raise _fail("where should the run go? pass --output DIR (or a run directory to resume)")
    retry = {"max_attempts": overrides.pop("max_attempts")} if overrides.get("max_attempts") else None
    overrides.pop("max_attempts", None)
    if retry:
        overrides["retry"] = retry
    for key in ("seed_summary", "seed_pool", "card_template"):
        if overrides.get(key) is not None:
            overrides[key] = str(overrides[key])
    try:
        plan = api.plan_run(target, mode=mode, config_file=config, **overrides)
        resumed = plan.store is not None
        what = "resuming" if resumed else "starting"
        done = plan.store.rounds_done - 1 if plan.store else 0
        where = ", ".join(plan.config.endpoints) if plan.config.endpoints else "the embedded model (SmolLM2-135M)"
        err.print(f"{what} {mode} run {target} at round {done + 1} of {plan.config.rounds} on {where}", markup=False)
        with RichObserver(err) as observer:
            store = asyncio.run(api.execute(plan, observer))
    except HFAdvisorError as e:
        done = _rounds_on_disk(target)
        suffix = f" ({done} complete rounds kept in {target})" if done else ""
        raise _fail(f"{e}{suffix}", e.exit_code) from None
    except KeyboardInterrupt:
        done = _rounds_on_disk(target)
        raise _fail(
            f"interrupted; {done} complete rounds kept in {target}: rerun `hfadvisor {'run' if mode == 'advisor' else 'baseline'} {target}` to resume",
            130,
        ) from None
    rows = sum(i.rows for i in store.index)
    err.print(f"done: {store.rounds_done - 1} rounds, {rows} rows in {target} (card: {target}/README.md)", markup=False)


def _rounds_on_disk(path: Path) -> int:
    rev_dir = path / "revisions"
    return max(len(list(rev_dir.glob("round-*.json"))) - 1, 0) if rev_dir.is_dir() else 0


def _run_command(mode: str):
    def command(
        run_dir: RunDir = None,
        output: Output = None,
        config: ConfigFile = None,
        endpoint: Endpoint = None,
        api: Api = None,
        rounds: Rounds = None,
        batch_size: BatchSize = None,
        examples_per_prompt: Examples = None,
        preset: PresetOpt = None,
        seed_summary: SeedSummary = None,
        seed_pool: SeedPool = None,
        summary_sees_examples: SummaryExamples = None,
        prompt_style: PromptStyle = None,
        model: Model = None,
        chat_template: ChatTemplate = None,
        concurrency: Concurrency = None,
        timeout: Timeout = None,
        max_attempts: MaxAttempts = None,
        seed: Seed = None,
        pipeline_depth: PipelineDepth = None,
        card_template: CardTemplate = None,
        push_to_hub: PushToHub = None,
        public: Public = None,
        tag_prefix: TagPrefix = None,
        label_every: LabelEvery = None,
        argilla_dataset: ArgillaDataset = None,
        argilla_workspace: ArgillaWorkspace = None,
        use_labels: UseLabels = None,
        metrics: Metrics = None,
    ) -> None:
        overrides = {
            "endpoints": endpoint or None,
            "api": api,
            "rounds": rounds,
            "batch_size": batch_size,
            "examples_per_prompt": examples_per_prompt,
            "preset": preset,
            "seed_summary": seed_summary,
            "seed_pool": seed_pool,
            "summary_sees_examples": summary_sees_examples if mode == "advisor" else None,
            "prompt_style": prompt_style,
            "model": model,
            "chat_template": chat_template,
            "concurrency": concurrency,
            "timeout": timeout,
            "max_attempts": max_attempts,
            "seed": seed,
            "pipeline_depth": pipeline_depth if mode == "baseline" else None,
            "card_template": card_template,
            "push_to_hub": push_to_hub,
            "hub_private": False if public else None,
            "hub_tag_prefix": tag_prefix,
            "label_every": label_every,
            "argilla_dataset": argilla_dataset,
            "argilla_workspace": argilla_workspace,
            "use_labels": use_labels,
            "metrics": metrics,
        }
        _launch(mode, run_dir, output, config, overrides)

    return command


app.command(
    "run",
    help="Run (or resume) a Data Advisor run. Without --endpoint, the embedded SmolLM2 model is served locally.",
)(_run_command("advisor"))
app.command("baseline", help="Run (or resume) the Self-Instruct baseline: same flags and output as `run`.")(
    _run_command("baseline")
)


@app.command(help="Serve the embedded model (or a local HF model folder) over TGI's HTTP protocol.")
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
    model: Annotated[str | None, typer.Option(help="local model folder \\[default: embedded SmolLM2-135M]")] = None,
) -> None:
    from hfadvisor.serve.process import serve as serve_forever

    try:
        serve_forever(host=host, port=port, model=model)
    except HFAdvisorError as e:
        raise _fail(str(e), e.exit_code) from None


@app.command("log", help="List the revisions (rounds) of a run: weakness, rows, rejects.")
def log_cmd(
    path: Annotated[Path, typer.Argument(help="run directory")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per round")] = False,
) -> None:
    from hfadvisor.rundir.store import RunStore

    try:
        store = RunStore.open(path, repair=False)
    except HFAdvisorError as e:
        raise _fail(str(e), e.exit_code) from None
    if as_json:
        for rev in store.revisions():
            line = {
                "round": rev.round,
                "weakness": rev.weakness,
                "rows": rev.rows,
                "rejects": rev.rejects,
                "reject_reasons": rev.reject_reasons,
                "summary_source": rev.summary_source,
                "seconds": round(rev.timings.total, 3),
                "sha256": rev.sha256,
            }
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    table = Table(title=f"{path} — {store.info.mode} run {store.info.run_id[:8]}, config {store.info.config_hash}")
    for col in ("round", "weakness", "rows", "rejects", "summary", "seconds", "model"):
        table.add_column(col, overflow="fold")
    for rev in store.revisions():
        table.add_row(
            str(rev.round),
            rev.weakness or ("(seeds)" if rev.round == 0 else "—"),
            str(rev.rows),
            str(rev.rejects),
            rev.summary_source,
            f"{rev.timings.total:.1f}",
            rev.model,
        )
    console = Console()
    console.print(table)
    from hfadvisor.rundir.store import sessions

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


def _register_command_groups() -> None:
    """Commands of outside systems live in `hfadvisor/commands/<name>.py`, each with `register(app)`."""
    import importlib
    import pkgutil

    from hfadvisor import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"hfadvisor.commands.{info.name}").register(app)


_register_command_groups()


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except HFAdvisorError as e:  # pragma: no cover - commands catch their own
        err.print(f"error: {e}", markup=False)
        sys.exit(e.exit_code)
