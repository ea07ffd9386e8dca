"""The Space's safety rails: readable one-line errors with no token in them, and no borrowed login.

Secrets: the token box is an input of the events that need it and nothing else. It is never
kept in session state, in the environment or on disk, never put in a message (errors are
scrubbed), and the browser-side run history (which would store inputs) is switched off.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hfadvisor.errors import HFAdvisorError, scrub

log = logging.getLogger("hfadvisor.space")


def forget_server_token() -> None:
    """For a public Space: make this process's own Hugging Face login unreachable.

    huggingface_hub falls back to `get_token()` (HF_TOKEN, the stored token file, CI's OIDC)
    whenever a client gets no token, so an endpoint a visitor types would otherwise receive the
    owner's token. Visitors' tokens are passed explicitly and are unaffected.
    """
    from huggingface_hub import constants

    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        os.environ.pop(key, None)
    nowhere = str(Path(tempfile.mkdtemp(prefix="hfadvisor-no-login-")) / "token")
    os.environ["HF_TOKEN_PATH"] = nowhere  # the documented variable, for anything imported later
    constants.HF_TOKEN_PATH = nowhere  # huggingface_hub read it at import; this is what get_token() reads
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"


def friendly(fn: Callable[..., Any], *bound: Any) -> Callable[..., Any]:
    """`fn` as a Gradio handler: its leading arguments bound (e.g. the Space's options), and every
    user-facing failure turned into one readable line in the page; never a traceback, never a token.

    Gradio reads the remaining signature (inputs, `gr.Progress`) through `__wrapped__`.
    """
    import gradio as gr

    call = functools.partial(fn, *bound) if bound else fn
    params = list(inspect.signature(call).parameters)
    token_at = params.index("token") if "token" in params else None
    name = fn.__name__

    def token_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        if token_at is not None and token_at < len(args):
            return args[token_at] or None
        return kwargs.get("token") or None

    def translate(e: Exception, token: str | None) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, HFAdvisorError):
            return gr.Error(scrub(str(e), token), print_exception=False)
        log.error("%s failed:\n%s", name, scrub(traceback.format_exc(), token))
        return gr.Error(
            f"something went wrong ({type(e).__name__}); the details are in the server log", print_exception=False
        )

    wrapper: Callable[..., Any]
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(call)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from call(*args, **kwargs)
            except Exception as e:
                raise translate(e, token_of(args, kwargs)) from None

        wrapper = gen_wrapper
    else:

        @functools.wraps(call)
        def plain_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except Exception as e:
                raise translate(e, token_of(args, kwargs)) from None

        wrapper = plain_wrapper
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = fn.__doc__
    return wrapper
