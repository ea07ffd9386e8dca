"""Commands that measure a run: `respond`, `export`, `evaluate`, `compare`.

Heavy packages (torch, matplotlib, datasets loaders) are imported inside the commands, so
`hfadvisor --help` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hfadvisor.errors import HFAdvisorError

err = Console(stderr=True)

Endpoint = Annotated[
    list[str] | None,
    typer.Option("--endpoint", "-e", help="TGI / OpenAI-compatible base URL \\[default: the embedded model]"),
]
Api = Annotated[str, typer.Option(help="tgi (native /generate API) or chat (/v1/chat/completions)")]
ChatTemplate = Annotated[
    str | None,
    typer.Option(help="tgi api: Jinja chat template file, or 'server' \\[default: the server's, if it has one]"),
]
Concurrency = Annotated[int, typer.Option(help="max requests in flight")]
Timeout = Annotated[float, typer.Option(help="seconds per request")]
MaxAttempts = Annotated[int, typer.Option(help="attempts per call before giving up")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _endpoints(urls: list[str] | None) -> Iterator[tuple[list[str], str | None]]:
    """The given endpoints with the user's token, or the embedded model served locally (no token)."""
    if urls:
        from huggingface_hub import get_token

        yield [u.rstrip("/") for u in urls], get_token()
        return
    from hfadvisor.serve.process import embedded_endpoint

    _say("starting the embedded model (SmolLM2-135M-Instruct) …")
    with embedded_endpoint() as url:
        yield [url], None


def _check_urls(urls: list[str] | None) -> None:
    for url in urls or []:
        if not url.startswith(("http://", "https://")):
            raise _fail(f"endpoint {url!r} must start with http:// or https://")


def _check_api(api: str, flag: str = "--api") -> None:
    if api not in ("tgi", "chat"):
        raise _fail(f"{flag} {api!r}: choose tgi or chat")


def register(app: typer.Typer) -> None:
    @app.command(help="Answer every prompt of a run with a target chat model (a resumable revision: responses/).")
    def respond(
        run_dir: Annotated[Path, typer.Argument(help="run directory")],
        endpoint: Endpoint = None,
        api: Api = "tgi",
        model: Annotated[str | None, typer.Option(help="model name \\[default: from the server's /info]")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="max tokens per response")] = 256,
        temperature: Annotated[float, typer.Option(help="0 = greedy (the paper)")] = 0.0,
        top_p: Annotated[float | None, typer.Option(help="nucleus sampling (with --temperature > 0)")] = None,
        chat_template: ChatTemplate = None,
        seed: Annotated[int, typer.Option(help="seed for sampled responses")] = 0,
        concurrency: Concurrency = 16,
        timeout: Timeout = 120.0,
        max_attempts: MaxAttempts = 8,
    ) -> None:
        from hfadvisor.config import RetryPolicy
        from hfadvisor.respond import respond as respond_async

        _check_urls(endpoint)
        _check_api(api)
        if max_new_tokens < 1 or not 0 <= temperature <= 5:
            raise _fail("--max-new-tokens must be ≥ 1 and --temperature between 0 and 5")

        def progress(r: int, done: int, total: int) -> None:
            _say(f"round {r} answered: {done}/{total} rows have a response")

        try:
            with _endpoints(endpoint) as (urls, token):
                result = asyncio.run(
                    respond_async(
                        run_dir,
                        urls,
                        api=api,
                        model=model,
                        token=token,
                        max_new_tokens=max_new_tokens,
                        temperature=temperature,
                        top_p=top_p,
                        chat_template=chat_template,
                        seed=seed,
                        concurrency=concurrency,
                        timeout=timeout,
                        retry=RetryPolicy(max_attempts=max_attempts),
                        on_round=progress,
                    )
                )
        except HFAdvisorError as e:
            raise _fail(f"{e} (finished rounds are kept: rerun to continue)", e.exit_code) from None
        except KeyboardInterrupt:
            raise _fail(
                f"interrupted; finished rounds are kept: rerun `hfadvisor respond {run_dir}` to continue", 130
            ) from None
        if result["chat_template"] == "none":
            _say(
                "warning: the server reports no chat template, prompts were sent raw (use --chat-template or --api chat)"
            )
        _say(
            f"done: {result['rows_answered_now']} new responses by {result['model']}; "
            f"{result['rows_with_response']}/{result['rows_total']} rows answered in {run_dir}/responses"
        )

    @app.command(help="Export a run for training: chat-format messages with stable train/validation/test splits.")
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
            raise _fail(str(e), e.exit_code) from None
        counts = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
        skipped = manifest["rows_without_response"]
        _say(f"exported {counts} to {output}" + (f" ({skipped} rows without a response left out)" if skipped else ""))

    @app.command(
        help="Safety evaluation: a target model answers held-out harmful prompts, a judge (LlamaGuard-style) "
        "labels each answer safe/unsafe; safe rate overall and per category."
    )
    def evaluate(
        target: Annotated[
            list[str] | None, typer.Option(help="target model endpoint \\[default: embedded model]")
        ] = None,
        judge: Annotated[list[str] | None, typer.Option(help="judge model endpoint \\[default: the target's]")] = None,
        prompts: Annotated[str, typer.Option(help="file (.jsonl .json .csv .parquet .txt) or a Hub dataset id")] = "",
        output: Annotated[Path | None, typer.Option("--output", "-o", help="evaluation directory")] = None,
        target_api: Annotated[str, typer.Option(help="tgi or chat")] = "tgi",
        judge_api: Annotated[str, typer.Option(help="tgi or chat")] = "tgi",
        target_model: Annotated[str | None, typer.Option(help="target model name \\[default: /info]")] = None,
        judge_model: Annotated[str | None, typer.Option(help="judge model name \\[default: /info]")] = None,
        target_chat_template: ChatTemplate = None,
        judge_chat_template: Annotated[
            str | None,
            typer.Option(help="tgi api: judge's chat template file or 'server' \\[default: server's, else built-in]"),
        ] = None,
        judge_format: Annotated[
            str,
            typer.Option(
                help="llamaguard: the conversation through the judge's chat template; "
                "instruct: a LlamaGuard-style instruction as one user message (general chat models)"
            ),
        ] = "llamaguard",
        prompt_column: Annotated[str | None, typer.Option(help="[default: prompt/question/query/text]")] = None,
        category_column: Annotated[str | None, typer.Option(help="[default: category/harm_category]")] = None,
        split: Annotated[str, typer.Option(help="split of a Hub/local dataset")] = "test",
        limit: Annotated[int | None, typer.Option(help="only the first N prompts")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="target tokens per answer (paper: 128)")] = 128,
        concurrency: Concurrency = 16,
        timeout: Timeout = 120.0,
        max_attempts: MaxAttempts = 8,
    ) -> None:
        from hfadvisor.config import RetryPolicy
        from hfadvisor.evaluate import evaluate as evaluate_async
        from hfadvisor.evaluate import load_prompts

        if not prompts or output is None:
            raise _fail("pass --prompts FILE|DATASET and --output DIR")
        _check_urls(target)
        _check_urls(judge)
        _check_api(target_api, "--target-api")
        _check_api(judge_api, "--judge-api")
        try:
            items = load_prompts(prompts, prompt_column, category_column, split=split, limit=limit)
            with contextlib.ExitStack() as stack:
                t_urls, t_token = stack.enter_context(_endpoints(target))
                j_urls, j_token = (t_urls, t_token) if not judge else stack.enter_context(_endpoints(judge))
                summary = asyncio.run(
                    evaluate_async(
                        items,
                        output,
                        target=t_urls,
                        judge=j_urls,
                        target_api=target_api,
                        judge_api=judge_api,
                        target_model=target_model,
                        judge_model=judge_model,
                        target_token=t_token,
                        judge_token=j_token,
                        target_chat_template=target_chat_template,
                        judge_chat_template=judge_chat_template,
                        judge_format=judge_format,
                        max_new_tokens=max_new_tokens,
                        concurrency=concurrency,
                        timeout=timeout,
                        retry=RetryPolicy(max_attempts=max_attempts),
                        source=prompts,
                        on_progress=lambda done, total: _say(f"{done}/{total} prompts judged"),
                    )
                )
        except HFAdvisorError as e:
            raise _fail(f"{e} (judged prompts are kept in {output}: rerun to continue)", e.exit_code) from None
        except KeyboardInterrupt:
            raise _fail(f"interrupted; judged prompts are kept in {output}: rerun to continue", 130) from None
        if summary["target_chat_template"] == "none":
            _say("warning: the target server reports no chat template, prompts were sent raw (--target-chat-template)")
        if summary["safe_rate"] is None:
            raise _fail(f"no verdict could be parsed: check the judge's answers in {output}/judgements.parquet")
        _say(
            f"safe rate {summary['safe_rate']:.3f} ({summary['safe']}/{summary['judged']} judged; "
            f"{summary['unparsed']} unparseable verdicts) — {output}/report.md"
        )

    @app.command(help="Compare runs: Markdown report with PNG plots (coverage, diversity, categories, safety).")
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
            raise _fail(str(e), e.exit_code) from None
        if as_json:
            sys.stdout.write(json.dumps(report["runs"], indent=1) + "\n")
        _say(f"report: {output}/report.md ({', '.join(report['plots'])})")
