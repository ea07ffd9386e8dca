"""`hfadvisor respond RUN_DIR`: a target chat model answers every prompt of a run (resumable, `responses/`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hfadvisor.aio import run_cli
from hfadvisor.commands._common import check_api, check_urls, fail, interrupted, say
from hfadvisor.commands._endpoint import Api, ChatTemplate, Concurrency, Endpoint, MaxAttempts, Timeout, endpoint_spec
from hfadvisor.errors import HFAdvisorError

HELP = "Answer every prompt of a run with a target chat model (a resumable revision: responses/)."


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
    from hfadvisor.respond import respond as respond_async

    check_urls(endpoint)
    check_api(api)
    if max_new_tokens < 1 or not 0 <= temperature <= 5:
        raise fail("--max-new-tokens must be ≥ 1 and --temperature between 0 and 5")

    def progress(r: int, done: int, total: int) -> None:
        say(f"round {r} answered: {done}/{total} rows have a response")

    limits = {"concurrency": concurrency, "timeout": timeout, "max_attempts": max_attempts}
    try:
        with endpoint_spec(endpoint, api=api, model=model, chat_template=chat_template, **limits) as target:
            result = run_cli(
                respond_async(run_dir, target, max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, seed=seed, on_round=progress)
            )  # fmt: skip
    except HFAdvisorError as e:
        raise fail(f"{e} (finished rounds are kept: rerun to continue)", e.exit_code) from None
    except KeyboardInterrupt as e:
        raise interrupted(e, f"finished rounds are kept: rerun `hfadvisor respond {run_dir}` to continue") from None
    if result.chat_template == "none":
        say("warning: the server reports no chat template, prompts were sent raw (use --chat-template or --api chat)")
    say(
        f"done: {result.rows_answered_now} new responses by {result.model}; "
        f"{result.rows_with_response}/{result.rows_total} rows answered in {run_dir}/responses"
    )


def register(app: typer.Typer) -> None:
    app.command("respond", help=HELP)(respond)
