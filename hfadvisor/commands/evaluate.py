"""`hfadvisor evaluate`: a target model answers held-out harmful prompts, a judge labels each answer."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.commands._common import (
    ChatTemplate,
    Concurrency,
    MaxAttempts,
    Timeout,
    check_api,
    check_urls,
    endpoints,
    fail,
    say,
)
from hfadvisor.errors import HFAdvisorError

HELP = (
    "Safety evaluation: a target model answers held-out harmful prompts, a judge (LlamaGuard-style) "
    "labels each answer safe/unsafe; safe rate overall and per category."
)


def evaluate(
    target: Annotated[list[str] | None, typer.Option(help="target model endpoint \\[default: embedded model]")] = None,
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
        raise fail("pass --prompts FILE|DATASET and --output DIR")
    check_urls(target)
    check_urls(judge)
    check_api(target_api, "--target-api")
    check_api(judge_api, "--judge-api")
    try:
        items = load_prompts(prompts, prompt_column, category_column, split=split, limit=limit)
        with contextlib.ExitStack() as stack:
            t_urls, t_token = stack.enter_context(endpoints(target))
            j_urls, j_token = (t_urls, t_token) if not judge else stack.enter_context(endpoints(judge))
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
                    on_progress=lambda done, total: say(f"{done}/{total} prompts judged"),
                )
            )
    except HFAdvisorError as e:
        raise fail(f"{e} (judged prompts are kept in {output}: rerun to continue)", e.exit_code) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; judged prompts are kept in {output}: rerun to continue", 130) from None
    if summary.target_chat_template == "none":
        say("warning: the target server reports no chat template, prompts were sent raw (--target-chat-template)")
    if summary.safe_rate is None:
        raise fail(f"no verdict could be parsed: check the judge's answers in {output}/judgements.parquet")
    say(
        f"safe rate {summary.safe_rate:.3f} ({summary.safe}/{summary.judged} judged; "
        f"{summary.unparsed} unparseable verdicts) — {output}/report.md"
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=HELP)(evaluate)
