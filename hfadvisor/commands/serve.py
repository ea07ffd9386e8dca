"""`hfadvisor serve`: the embedded model (or a local HF model folder) over TGI's HTTP protocol."""

from __future__ import annotations

from typing import Annotated

import typer

from hfadvisor.commands._common import fail
from hfadvisor.errors import HFAdvisorError


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
    model: Annotated[str | None, typer.Option(help="local model folder \\[default: embedded SmolLM2-135M]")] = None,
    grammar: Annotated[
        bool, typer.Option("--grammar/--no-grammar", help="honour JSON-schema/regex grammars (off: 422, as TGI)")
    ] = True,
) -> None:
    from hfadvisor.serve.process import serve as serve_forever

    try:
        serve_forever(host=host, port=port, model=model, grammar=grammar)
    except HFAdvisorError as e:
        raise fail(e) from None


def register(app: typer.Typer) -> None:
    app.command("serve", help="Serve the embedded model (or a local HF model folder) over TGI's HTTP protocol.")(serve)
