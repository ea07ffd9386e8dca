"""What every command module shares: the stderr console, `fail`/`say`, and the common options.

Command modules import from here, never from `hfadvisor.cli` (which imports them): one
direction of imports, and one place that decides how an error line looks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hfadvisor.errors import HFAdvisorError, Terminated

err = Console(stderr=True)


def group(name: str, help: str, **options: object) -> typer.Typer:
    """A typer app for a command group, with the settings every hfadvisor app shares."""
    settings: dict[str, object] = {"no_args_is_help": True, "add_completion": False, "pretty_exceptions_enable": False}
    return typer.Typer(name=name, help=help, **(settings | options))  # type: ignore[arg-type]


def fail(message: str | HFAdvisorError, code: int | None = None) -> typer.Exit:
    """Print `error: MESSAGE` as one line on stderr; return the `typer.Exit` to raise (exit 2 by default)."""
    if code is None:
        code = message.exit_code if isinstance(message, HFAdvisorError) else 2
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def interrupted(e: KeyboardInterrupt, kept: str) -> typer.Exit:
    """The one line for Ctrl-C (exit 130) or SIGTERM (exit 143, see `aio.run_cli`): what was kept."""
    if isinstance(e, Terminated):
        return fail(f"terminated (SIGTERM); {kept}", 143)
    return fail(f"interrupted; {kept}", 130)


def say(message: str) -> None:
    """One progress or result line on stderr, printed as is (model text may contain `[...]`)."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- options shared by several commands
RunDirArg = Annotated[Path, typer.Argument(help="run directory")]
Endpoint = Annotated[
    list[str] | None,
    typer.Option("--endpoint", "-e", help="TGI / OpenAI-compatible base URL \\[default: the embedded model]"),
]
Api = Annotated[
    str,
    typer.Option(
        help="tgi (native /generate API), chat (/v1/chat/completions) or completions (/v1/completions: raw text)"
    ),
]
ChatTemplate = Annotated[
    str | None,
    typer.Option(help="tgi api: Jinja chat template file, or 'server' \\[default: the server's, if it has one]"),
]
Concurrency = Annotated[int, typer.Option(help="max requests in flight")]
Timeout = Annotated[float, typer.Option(help="seconds per request")]
MaxAttempts = Annotated[int, typer.Option(help="attempts per call before giving up")]
Token = Annotated[
    str | None,
    typer.Option(
        help="Hugging Face token \\[default: $HF_TOKEN or your `hf auth login`; prefer those]", show_default=False
    ),
]


def check_urls(urls: list[str] | None) -> None:
    for url in urls or []:
        if not url.startswith(("http://", "https://")):
            raise fail(f"endpoint {url!r} must start with http:// or https://")


def check_api(api: str, flag: str = "--api") -> None:
    if api not in ("tgi", "chat", "completions"):
        raise fail(f"{flag} {api!r}: choose tgi, chat or completions")


@contextlib.contextmanager
def endpoints(urls: list[str] | None) -> Iterator[tuple[list[str], str | None]]:
    """The given endpoints with the user's token, or the embedded model served locally (no token)."""
    if urls:
        from huggingface_hub import get_token

        yield [u.rstrip("/") for u in urls], get_token()
        return
    from hfadvisor.serve.process import embedded_endpoint

    say("starting the embedded model (SmolLM2-135M-Instruct) …")
    with embedded_endpoint() as url:
        yield [url], None
