"""Hub failures as one-line, actionable errors that never carry the token.

`huggingface_hub` raises `HfHubHTTPError` (status + server message) or the HTTP client's
transport errors; `describe` turns either into one line, and `is_transient` says whether
a retry (after re-reading the Hub's state) can succeed.
"""

from __future__ import annotations

import httpx2
from huggingface_hub.errors import HfHubHTTPError

from hfadvisor.errors import scrub

# Worth retrying: timeouts, rate limits, server errors; 409/412 mean someone moved a ref
# (a tag or main) under us, which a re-read of the Hub's state resolves.
TRANSIENT_STATUS = frozenset({408, 409, 412, 429, 500, 502, 503, 504})


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (huggingface_hub wraps LFS upload errors in RuntimeError)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def http_status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            return int(e.response.status_code)
    return None


def is_transient(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, httpx2.TransportError):
            return True
        if isinstance(e, HfHubHTTPError):
            return http_status(e) in TRANSIENT_STATUS
    return False


def describe(exc: BaseException, *, endpoint: str, repo_id: str, token: str | None) -> str:
    """One line saying what failed and what to do, for any error the Hub client raised."""
    status = http_status(exc)
    server = ""
    for e in _chain(exc):
        if isinstance(e, HfHubHTTPError):
            text = (e.server_message or str(e)).strip()
            server = text.splitlines()[0] if text else ""
            break
    namespace = repo_id.split("/")[0]
    if status is None:
        transport = next((e for e in _chain(exc) if isinstance(e, httpx2.TransportError)), None)
        why = type(transport).__name__
        if isinstance(transport, httpx2.ConnectError):
            msg = f"cannot reach the Hub at {endpoint} ({why}): check your network or HF_ENDPOINT"
        elif isinstance(transport, httpx2.TimeoutException):
            msg = f"the Hub at {endpoint} timed out working on {repo_id} ({why})"
        elif transport is not None:
            msg = f"the connection to the Hub at {endpoint} broke working on {repo_id} ({why})"
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            msg = f"the Hub client failed for {repo_id}: {first}"
    elif status == 401 and not token:  # the Hub answers 401 to anonymous requests for private repos
        msg = f"{repo_id} was not found on {endpoint}, or it is private: set HF_TOKEN or run `hf auth login`"
    elif status == 401:
        msg = f"the Hub at {endpoint} rejected the token (401): set a valid HF_TOKEN or run `hf auth login`"
    elif status == 403:
        msg = f"no write access to {repo_id} (403: {server}): use a token with write access to '{namespace}'"
    elif status == 404:
        msg = f"{repo_id} was not found on {endpoint} (404: {server}): check the repo id and that your token can see it"
    else:
        msg = f"the Hub answered {status} for {repo_id}: {server}"
    return scrub(" ".join(msg.split()), token)
