"""Blocking entry points over the async core that also work where an event loop is already running."""

from __future__ import annotations

import asyncio
import contextvars
import signal
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_TERMINATED = object()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, or, when this thread already runs a loop (Jupyter, an async web app,
    Playwright's sync API), the same in a worker thread: `asyncio.run` refuses to nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="hfadvisor") as pool:
        return pool.submit(context.run, asyncio.run, coro).result()


def run_cli(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for a CLI command, where SIGTERM (kill, docker stop, systemd, a batch scheduler)
    cancels the command like Ctrl-C does: its cleanup runs (the session record; finished rounds
    stay), then `Terminated` is raised. Without this, SIGTERM ends Python on the spot."""
    from hfadvisor.errors import Terminated

    result = asyncio.run(_cancelled_by_sigterm(coro))
    if result is _TERMINATED:
        raise Terminated("terminated by SIGTERM")
    return result  # type: ignore[return-value]


async def _cancelled_by_sigterm(coro: Coroutine[Any, Any, T]) -> T | object:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[bool] = []

    def terminate() -> None:
        received.append(True)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return await coro
    try:
        return await coro
    except asyncio.CancelledError:
        if not received:
            raise
        return _TERMINATED
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
