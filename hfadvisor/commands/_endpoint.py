"""The CLI's endpoint options, and one `EndpointSpec` built from them (respond, evaluate's target and judge).

Commands import what describes a model server from here (the options stay defined in `_common`)
and pass the spec on whole instead of re-assembling its URLs, token and limits each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hfadvisor.commands._common import Api, ChatTemplate, Concurrency, Endpoint, MaxAttempts, Timeout, endpoints

if TYPE_CHECKING:  # hfadvisor.llm loads huggingface_hub: only when a command runs, so --help stays fast
    from hfadvisor.llm import EndpointSpec

__all__ = ["Api", "ChatTemplate", "Concurrency", "Endpoint", "MaxAttempts", "Timeout", "endpoint_spec"]


@contextlib.contextmanager
def endpoint_spec(urls: list[str] | None, *, max_attempts: int, **options: Any) -> Iterator[EndpointSpec]:
    """The spec for `urls` with the user's token, or for the embedded model served meanwhile (no URLs).

    `options` are `EndpointSpec` fields as the command's flags give them (api, model, chat_template,
    concurrency, timeout); `--max-attempts` becomes the retry policy.
    """
    from hfadvisor.config import RetryPolicy
    from hfadvisor.llm import EndpointSpec

    with endpoints(urls) as (found, token):
        yield EndpointSpec(tuple(found), token=token, retry=RetryPolicy(max_attempts=max_attempts), **options)
