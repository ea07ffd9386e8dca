"""Failed attempts: which ones are worth retrying, how long to wait, and what to show of them.

Kept apart from the client so the policy reads in one place: transient answers (429, 503,
timeouts, connection errors, malformed bodies) are retried with exponential backoff and jitter,
honouring the server's `Retry-After`; the rest stop the run with the server's own words.
"""

from __future__ import annotations

import email.utils
import time
from urllib.parse import urlsplit, urlunsplit

from huggingface_hub.errors import HfHubHTTPError
from tenacity import RetryCallState
from tenacity.wait import wait_exponential_jitter

from hfadvisor.config import RetryPolicy

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class TransientError(Exception):
    """A failed attempt worth retrying; `retry_after` is the server's requested wait, if any."""

    def __init__(self, message: str, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


def display_url(url: str) -> str:
    """The URL without credentials or query string: safe to log, store and show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class WaitRetryAfter:
    """Wait what the server asked for (capped), else exponential backoff with jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.initial_backoff
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.give_up_after)
        return float(self.backoff(state))


def http_status(exc: Exception) -> int | None:
    """The HTTP status behind a client exception (the hub client wraps TGI's errors)."""
    http = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__
    if isinstance(http, HfHubHTTPError) and http.response is not None:
        return int(http.response.status_code)
    return None


def error_detail(http: HfHubHTTPError) -> str:
    """The server's own error message, short: TGI `{"error"}`, vLLM `{"message"}` or, in newer
    vLLM and OpenAI, `{"error": {"message"}}`."""
    try:
        body = http.response.json()
        msg = body.get("error") or body.get("message") or ""
        if isinstance(msg, dict):
            msg = msg.get("message") or ""
    except Exception:
        msg = ""
    msg = " ".join(str(msg).split())[:200]
    return f" ({msg})" if msg else ""
