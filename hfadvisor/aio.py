"""Blocking entry points over the async core that also work where an event loop is already running."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


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
