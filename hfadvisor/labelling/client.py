"""Connecting to Argilla: flags or the SDK's environment variables, and one-line errors.

Every failure a user can fix (server down, wrong key, missing workspace or dataset, a role
that may not create datasets) becomes a `LabellingError` with a single actionable line. The
API key is redacted from every message we build or pass on, because SDK and server messages
can echo request details.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from hfadvisor.deps import require
from hfadvisor.errors import LabellingError

if TYPE_CHECKING:
    import argilla as rg

DEFAULT_URL = "http://localhost:6900"  # the argilla SDK's default
TIMEOUT_S = 60
RETRIES = 3  # httpx transport retries on connection failures (0 + 0.5 + 1 s of backoff)
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Argilla. `key` is excluded from repr so it cannot leak into logs."""

    url: str
    key: str = field(repr=False)

    @property
    def public_url(self) -> str:
        """The URL without any user:password part: safe to print and to store in manifests."""
        return public_url(self.url)


def public_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def resolve(api_url: str | None = None, api_key: str | None = None) -> Connection:
    """Flags win over `ARGILLA_API_URL` / `ARGILLA_API_KEY` (the SDK's own conventions)."""
    url = (api_url or os.environ.get("ARGILLA_API_URL") or DEFAULT_URL).strip().rstrip("/")
    key = (api_key or os.environ.get("ARGILLA_API_KEY") or "").strip()
    if not url.startswith(("http://", "https://")):
        raise LabellingError(f"Argilla URL {public_url(url)!r} must start with http:// or https:// (--api-url)")
    if not key:
        raise LabellingError("no Argilla API key: set ARGILLA_API_KEY or pass --api-key")
    return Connection(url, key)


def one_line(text: str, secret: str | None = None) -> str:
    """Collapse whitespace, drop the secret, cap the length: safe to show as one error line."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _detail(message: str) -> str:
    """The server's `detail` out of an SDK error message ('... Details: {"detail": "..."}')."""
    m = re.search(r'"detail"\s*:\s*"([^"]*)"', message)
    return m.group(1) if m else message.split(". Details:")[0]


@contextlib.contextmanager
def errors(conn: Connection, action: str) -> Iterator[None]:
    """Translate SDK / HTTP failures during `action` into one-line `LabellingError`s."""
    import httpx
    from argilla._exceptions import (
        ArgillaAPIError,
        ArgillaCredentialsError,
        ArgillaError,
        ForbiddenError,
        UnauthorizedError,
    )

    url = conn.public_url
    try:
        yield
    except LabellingError:
        raise
    except (ArgillaCredentialsError, UnauthorizedError):
        raise LabellingError(
            f"the Argilla server at {url} rejected the API key (401 Unauthorized): check ARGILLA_API_KEY or --api-key"
        ) from None
    except ForbiddenError:
        raise LabellingError(
            f"{action}: this Argilla user may not do that (403 Forbidden): use an owner or admin API key"
        ) from None
    except ArgillaAPIError as e:
        status = getattr(e, "status_code", "?")
        raise LabellingError(
            one_line(f"{action}: the Argilla server at {url} answered HTTP {status}: {_detail(str(e))}", conn.key)
        ) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise LabellingError(f"{url} is not a valid Argilla URL (--api-url / ARGILLA_API_URL)") from None
    except httpx.TimeoutException:
        raise LabellingError(f"{action}: the Argilla server at {url} timed out: retry, or check the server") from None
    except (httpx.TransportError, OSError) as e:
        reason = one_line(type(e).__name__ if not str(e) else str(e), conn.key)
        raise LabellingError(
            one_line(
                f"cannot reach the Argilla server at {url} ({reason}): is it running? Set ARGILLA_API_URL or --api-url",
                conn.key,
            )
        ) from None
    except httpx.HTTPStatusError as e:
        raise LabellingError(
            f"{action}: the Argilla server at {url} answered HTTP {e.response.status_code}: is it an Argilla 2.x server?"
        ) from None
    except ArgillaError as e:
        raise LabellingError(one_line(f"{action}: {e}", conn.key)) from None


def connect(conn: Connection) -> rg.Argilla:
    """An SDK client whose key was accepted (the SDK checks `GET /api/v1/me` on creation)."""
    require("argilla", "argilla")
    import argilla as rg
    from argilla._exceptions import NotFoundError

    with errors(conn, "connecting"):
        try:
            return rg.Argilla(api_url=conn.url, api_key=conn.key, timeout=TIMEOUT_S, retries=RETRIES)
        except NotFoundError:
            raise LabellingError(
                f"{conn.public_url} does not answer like an Argilla 2.x server (404 on /api/v1/me): check --api-url"
            ) from None
        except ValueError:  # 200 with a web page (Argilla's UI answers unknown paths): the URL has a wrong path
            raise LabellingError(
                f"{conn.public_url} does not answer like an Argilla 2.x server (no JSON on /api/v1/me): check --api-url"
            ) from None


def close(client: rg.Argilla) -> None:
    with contextlib.suppress(Exception):
        client.http_client.close()


def workspace(client: rg.Argilla, conn: Connection, name: str | None) -> rg.Workspace:
    """The named workspace, or the user's only one; a clear error when it does not exist."""
    with errors(conn, "listing workspaces"):
        available = list(client.workspaces)
    names = sorted(w.name for w in available if w.name)
    if name is None:
        if len(available) == 1:
            return available[0]
        listed = ", ".join(names) or "none"
        raise LabellingError(f"pass --workspace: this Argilla user has {len(available)} workspaces ({listed})")
    for ws in available:
        if ws.name == name:
            return ws
    listed = ", ".join(names) or "none"
    raise LabellingError(
        f"Argilla workspace {name!r} not found on {conn.public_url} (available: {listed}): "
        "create it in Argilla or pass another --workspace"
    )


def find_dataset(client: rg.Argilla, conn: Connection, ws: rg.Workspace, name: str) -> rg.Dataset | None:
    """The dataset `name` in `ws`, or None (without the SDK's not-found warning)."""
    with errors(conn, f"looking up dataset {name!r}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ds in ws.datasets:
            if ds.name == name:
                return ds.get()
    return None
