"""`hfadvisor space [open] [RUN_DIR|REPO_ID]` (the Gradio Space on this machine) and `hfadvisor space publish`.

Locally the Space may open any run directory and use your own Hugging Face login when no
token is typed in the page; the deployable Space (`spaces/app.py`) allows neither.
`hfadvisor space runs/x` (no subcommand) means `hfadvisor space open runs/x`, as before the group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from hfadvisor.commands._common import Token, fail, say
from hfadvisor.deps import require
from hfadvisor.errors import HFAdvisorError, MissingDependencyError, scrub


class _OpenByDefault(TyperGroup):
    """A group whose first argument, when it names no subcommand, goes to `open` (keeps `space RUN_DIR`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["open", *args]
        return super().parse_args(ctx, args)


space_app = typer.Typer(
    name="space",
    cls=_OpenByDefault,
    help="The Space (Gradio): `open` a run on this machine (the default: `hfadvisor space RUN_DIR`), "
    "or `publish` it as a Hugging Face Space.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@space_app.command(
    "open", help="Open the Space (Gradio) here: a run round by round, runs compared, small runs started."
)
def open_space(
    source: Annotated[
        str | None, typer.Argument(help="run directory or Hub dataset repo id (owner/name) to open")
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision or round tag of SOURCE")] = None,
    compare: Annotated[str | None, typer.Option(help="a second run (e.g. the baseline) to compare SOURCE with")] = None,
    host: Annotated[str, typer.Option(help="interface to bind (0.0.0.0 to share on your network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 7860,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            help="keep runs started from the page here \\[default: the browser session's temp dir, "
            "removed an hour after it closes; download them from the page]"
        ),
    ] = None,
) -> None:
    try:
        require("space", "gradio")
        require("space", "plotly")
        from hfadvisor.space import SpaceOptions, build_app, launch_kwargs
        from hfadvisor.space.sources import classify_source, open_local

        sources = [s for s in (source, compare) if s]
        for s in sources:  # a typo or a non-run fails here, in the terminal, not later in the page
            if classify_source(s) == "local":
                open_local(Path(s).expanduser())
        if runs_dir is not None:
            runs_dir.mkdir(parents=True, exist_ok=True)
        options = SpaceOptions(sources=sources, revision=revision or "", runs_dir=runs_dir)
        demo = build_app(options)
    except HFAdvisorError as e:
        raise fail(e) from None
    say(f"hfadvisor space on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        demo.queue(default_concurrency_limit=4).launch(
            server_name=host, server_port=port, quiet=True, **launch_kwargs()
        )
    except OSError:
        raise fail(f"cannot serve on {host}:{port}: the port is taken or not allowed; pick another --port") from None


@space_app.command(
    "publish",
    help="Create or update a Hugging Face Space (private unless --public) that shows the given run repos.",
)
def publish(
    repo_id: Annotated[str, typer.Argument(metavar="OWNER/NAME", help="Space repo id to create or update")],
    run: Annotated[
        list[str] | None,
        typer.Option("--run", help="Hub dataset repo of a run the Space shows (repeat for several)"),
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="anyone can open the Space \\[default: private]")] = False,
    token: Token = None,
) -> None:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise fail(f"Space {repo_id!r}: give it as OWNER/NAME")
    try:
        try:
            from hfadvisor.space.publish import publish_space
        except ImportError as e:
            raise MissingDependencyError(f"hfadvisor.space.publish is unavailable ({e}); update hfadvisor") from None
        url = publish_space(repo_id, runs=list(run or []), private=not public, token=token)
    except HFAdvisorError as e:
        raise fail(scrub(str(e), token), e.exit_code) from None
    say(f"Space {repo_id} published ({'public' if public else 'private'}): {url}")


def register(app: typer.Typer) -> None:
    app.add_typer(space_app, name="space")
