"""A small error hierarchy: every error a user can cause or fix is an `HFAdvisorError`.

The CLI prints `str(error)` as one line and exits with `error.exit_code`, so messages
must say what went wrong *and* what to do about it, and must never contain secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class HFAdvisorError(Exception):
    """Base class: a user-facing, one-line, actionable error."""

    exit_code: int = 2


class ConfigError(HFAdvisorError, ValueError):
    """Bad configuration: flags, YAML file, presets, seed files (also a ValueError: a bad value given)."""


class RunStateError(HFAdvisorError):
    """The run directory is unusable as given (conflicting config, incompatible version, torn files)."""


class EndpointError(HFAdvisorError):
    """A text-generation endpoint is unreachable or kept failing past the retry budget."""


class ModelOutputError(HFAdvisorError):
    """The model's output could not be used (after validation and fallbacks)."""


class MissingDependencyError(HFAdvisorError):
    """An optional dependency is not installed; the message carries the install command (`hfadvisor.deps`)."""


class HubError(HFAdvisorError):
    """Pushing to or pulling from the Hub failed; the local run is untouched.

    `retryable`: the Hub kept failing transiently (network, 5xx, 429); trying later may work.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class LabellingError(HFAdvisorError):
    """An Argilla problem the user can fix; the message is one line and never holds the API key."""


class GenerationRequestError(HFAdvisorError):
    """The backend refuses a request as given (too long, empty): the server answers TGI's 422."""


class SpaceError(HFAdvisorError):
    """A user-facing problem in the Space (bad source, missing round, Hub refused): one readable line."""


class RunStopped(HFAdvisorError):
    """The user asked a Space run to stop; every round before this one is complete and kept."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, docker stop, systemd) ended a CLI command; it cleaned up as for Ctrl-C."""


class PublishError(HFAdvisorError):
    """The Space cannot be built or uploaded: one actionable line."""


def scrub(text: str, secret: str | None) -> str:
    """Remove a secret (a token, an API key) from any text that may reach a terminal, a log, a page or a file."""
    return text.replace(secret, "***") if secret else text


def first_user_error(group: BaseExceptionGroup) -> HFAdvisorError | None:
    """The first `HFAdvisorError` inside a (nested) exception group, if any."""
    for exc in group.exceptions:
        if isinstance(exc, HFAdvisorError):
            return exc
        if isinstance(exc, BaseExceptionGroup) and (inner := first_user_error(exc)) is not None:
            return inner
    return None


@contextmanager
def user_errors_first() -> Iterator[None]:
    """Re-raise a TaskGroup's failure as its first user-facing error, so the CLI prints one line.

    A failed endpoint inside `asyncio.TaskGroup` surfaces as an `ExceptionGroup`; without
    this the user would see a traceback instead of the error's actionable message.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        first = first_user_error(group)
        if first is not None:
            raise first from None
        raise
