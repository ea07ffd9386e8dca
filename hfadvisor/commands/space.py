"""`hfadvisor space [RUN_DIR|REPO_ID]`: the Gradio Space on this machine.

Locally the Space may open any run directory and use your own Hugging Face login when no
token is typed in the page; the deployable Space (`spaces/app.py`) allows neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("space", help="Open the Space (Gradio): a run round by round, runs compared, small runs started.")
    def space(
        source: Annotated[
            str | None, typer.Argument(help="run directory or Hub dataset repo id (owner/name) to open")
        ] = None,
        revision: Annotated[str | None, typer.Option(help="Hub revision or round tag of SOURCE")] = None,
        compare: Annotated[
            str | None, typer.Option(help="a second run (e.g. the baseline) to compare SOURCE with")
        ] = None,
        host: Annotated[str, typer.Option(help="interface to bind (0.0.0.0 to share on your network)")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port")] = 7860,
        runs_dir: Annotated[
            Path | None,
            typer.Option(
                help="keep runs started from the page here \\[default: the browser session's temp dir, removed an hour after it closes; download them from the page]"
            ),
        ] = None,
    ) -> None:
        from hfadvisor.cli import _fail
        from hfadvisor.errors import HFAdvisorError, MissingDependencyError, require

        try:
            require("gradio", "space")
            require("plotly", "space")
            from hfadvisor.space import SpaceOptions, build_app, launch_kwargs
            from hfadvisor.space.data import classify_source, open_local

            sources = [s for s in (source, compare) if s]
            for s in sources:  # a typo or a non-run fails here, in the terminal, not later in the page
                if classify_source(s) == "local":
                    open_local(Path(s).expanduser())
            if runs_dir is not None:
                runs_dir.mkdir(parents=True, exist_ok=True)
            options = SpaceOptions(sources=sources, revision=revision or "", runs_dir=runs_dir)
            demo = build_app(options)
        except MissingDependencyError as e:
            raise _fail(str(e), e.exit_code) from None
        except HFAdvisorError as e:
            raise _fail(str(e), e.exit_code) from None
        typer.echo(f"hfadvisor space on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
        try:
            demo.queue(default_concurrency_limit=4).launch(
                server_name=host, server_port=port, quiet=True, **launch_kwargs()
            )
        except OSError:
            raise _fail(
                f"cannot serve on {host}:{port}: the port is taken or not allowed; pick another --port"
            ) from None
