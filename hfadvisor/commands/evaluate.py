"""`hfadvisor evaluate`: a target model answers a benchmark; a judge labels safety answers, MMLU is scored."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from hfadvisor.aio import run_cli
from hfadvisor.commands._common import check_api, check_urls, fail, interrupted, say
from hfadvisor.commands._endpoint import ChatTemplate, Concurrency, MaxAttempts, Timeout, endpoint_spec
from hfadvisor.errors import HFAdvisorError

HELP = (
    "Evaluate a model: safety (--benchmark catqa|beavertails or --prompts FILE; the target answers, an explicit "
    "--judge (LlamaGuard-style) labels each answer; safe rate overall and per category) or utility "
    "(--benchmark mmlu: zero-shot accuracy overall and per subject, no judge)."
)


def evaluate(
    target: Annotated[list[str] | None, typer.Option(help="target model endpoint \\[default: embedded model]")] = None,
    judge: Annotated[
        list[str] | None, typer.Option(help="judge model endpoint (required for safety; see --judge-is-target)")
    ] = None,
    judge_is_target: Annotated[
        bool, typer.Option("--judge-is-target", help="let the target judge its own answers (not the paper's setup)")
    ] = False,
    benchmark: Annotated[
        str | None, typer.Option(help="catqa | beavertails (safety) | mmlu (utility), loaded from the Hub")
    ] = None,
    prompts: Annotated[str, typer.Option(help="file (.jsonl .json .csv .parquet .txt) or a Hub dataset id")] = "",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="evaluation directory")] = None,
    target_api: Annotated[str, typer.Option(help="tgi, chat or completions (raw text to /v1/completions)")] = "tgi",
    judge_api: Annotated[str, typer.Option(help="tgi, chat or completions")] = "tgi",
    target_model: Annotated[str | None, typer.Option(help="target model name \\[default: /info]")] = None,
    judge_model: Annotated[str | None, typer.Option(help="judge model name \\[default: /info]")] = None,
    target_chat_template: ChatTemplate = None,
    target_format: Annotated[
        str,
        typer.Option(
            help="chat: the target's chat template; paper: the reference's raw prompt "
            "'You are a helpful assistant. USER: {q} ASSISTANT:' to a raw-text API (tgi or completions)"
        ),
    ] = "chat",
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
    safe_rate: Annotated[
        str,
        typer.Option(
            help="headline safe rate: excluded = safe/(safe+unsafe), unparseable verdicts left out; "
            "paper = safe/all prompts (both are in summary.json)"
        ),
    ] = "excluded",
    structured: Annotated[
        str,
        typer.Option(
            help="send the graded answer's JSON schema (mmlu: the target's letter; safety with --judge-format "
            "instruct: the judge's verdict): off (text, as the paper) | auto | on"
        ),
    ] = "off",
    prompt_column: Annotated[str | None, typer.Option(help="[default: prompt/question/query/text]")] = None,
    category_column: Annotated[str | None, typer.Option(help="[default: category/harm_category]")] = None,
    split: Annotated[
        str | None, typer.Option(help="dataset split \\[default: test; a benchmark's own: en, test, validation]")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N prompts")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="target tokens per answer (paper: 128)")] = 128,
    concurrency: Concurrency = 16,
    timeout: Timeout = 120.0,
    max_attempts: MaxAttempts = 8,
) -> None:
    from hfadvisor import benchmarks

    if bool(prompts) == bool(benchmark) or output is None:
        raise fail("pass --benchmark catqa|beavertails|mmlu or --prompts FILE|DATASET (one of them), and --output DIR")
    check_urls(target)
    check_urls(judge)
    check_api(target_api, "--target-api")
    check_api(judge_api, "--judge-api")
    from hfadvisor.evaluate import SAFE_RATES, check_target_format
    from hfadvisor.evaluate import evaluate as evaluate_async
    from hfadvisor.utility import STRUCTURED, evaluate_mmlu

    try:  # every option is checked before a dataset is downloaded or a server is asked
        bench = benchmarks.get(benchmark) if benchmark else None
        check_target_format(target_format, target_api, target_chat_template)
    except HFAdvisorError as e:
        raise fail(e) from None
    if safe_rate not in SAFE_RATES or structured not in STRUCTURED:
        raise fail(f"--safe-rate {safe_rate!r} / --structured {structured!r}: choose excluded|paper / off|auto|on")
    utility = bench is not None and bench.kind == "utility"
    if utility and (judge or judge_is_target):
        raise fail(f"{bench.name} is a utility benchmark scored by its answer key: drop --judge/--judge-is-target")
    if not utility and not judge and not judge_is_target:
        raise fail("safety evaluation needs an explicit --judge URL (e.g. LlamaGuard's server), or --judge-is-target")
    if judge and judge_is_target:
        raise fail("--judge and --judge-is-target exclude each other")
    limits = {"concurrency": concurrency, "timeout": timeout, "max_attempts": max_attempts}
    common: dict[str, Any] = {
        "target_format": target_format,
        "max_new_tokens": max_new_tokens,
        "on_progress": lambda done, total: say(f"{done}/{total} prompts {'answered' if utility else 'judged'}"),
    }
    try:
        with contextlib.ExitStack() as stack:
            if utility:
                questions = benchmarks.load_mmlu(split=split, limit=limit)
                source = f"{bench.repo_id} {bench.config} ({split or bench.split})"
            elif bench:
                items = benchmarks.load_safety(bench.name, split=split, limit=limit)
                source = f"{bench.repo_id} ({split or bench.split})"
            else:
                items = benchmarks.load_prompts(
                    prompts, prompt_column, category_column, split=split or "test", limit=limit
                )
                source = prompts
            t = stack.enter_context(
                endpoint_spec(target, api=target_api, model=target_model, chat_template=target_chat_template, **limits)
            )
            if utility:
                run = evaluate_mmlu(questions, output, target=t, structured=structured, source=source, **common)
                result = run_cli(run)
            else:
                judged = {"api": judge_api, "model": judge_model, "chat_template": judge_chat_template}
                if judge_is_target:
                    j = replace(t, **judged)
                else:
                    j = stack.enter_context(endpoint_spec(judge, **judged, **limits))
                name = bench.name if bench else ""
                run = evaluate_async(items, output, target=t, judge=j, benchmark=name, source=source, **common,
                                     judge_format=judge_format, safe_rate=safe_rate, judge_structured=structured)  # fmt: skip
                result = run_cli(run)
    except HFAdvisorError as e:
        kept = f" (finished chunks are kept in {output}: rerun to continue)" if (output / "parts").is_dir() else ""
        raise fail(f"{e}{kept}", e.exit_code) from None
    except KeyboardInterrupt as e:
        raise interrupted(e, f"finished chunks are kept in {output}: rerun to continue") from None
    if result.target_chat_template == "none" and result.target_format == "chat":
        say("warning: the target server reports no chat template, prompts were sent raw (--target-chat-template)")
    if utility:
        say(
            f"accuracy {result.accuracy:.3f} ({result.correct}/{result.prompts} correct; "
            f"{result.unparsed} answers named no option) — {output}/report.md"
        )
        return
    if result.judged == 0:
        raise fail(f"no verdict could be parsed: check the judge's answers in {output}/judgements.parquet")
    say(
        f"safe rate {result.safe_rate:.3f} [{result.safe_rate_definition}] ({result.safe}/{result.judged} judged; "
        f"{result.unparsed} unparseable verdicts; excluded {result.safe_rate_excluded:.3f}, "
        f"paper {result.safe_rate_paper:.3f}) — {output}/report.md"
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=HELP)(evaluate)
