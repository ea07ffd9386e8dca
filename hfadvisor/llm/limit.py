"""Adaptive concurrency: fewer calls in flight while an endpoint says it is overloaded.

Serverless and shared endpoints answer 429/503 ("Model is overloaded") when they are asked
too much at once; users of other tools lower their batch sizes by hand. This limit does it
for them, as TCP congestion control does (AIMD): it drops to 0.7× on an overload answer and
grows by 1/limit per success (about +1 per limit's worth of calls), between 1 and
`--concurrency`. Endpoints that queue instead of refusing (TGI up to its
max_concurrent_requests) never trigger it: the limit then stays at `--concurrency`.
A burst of overload answers to calls that were in flight together lowers it once, not once
per answer: only a call that got its slot after the last decrease can decrease it again.
Waiters are served first come, first served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

DECREASE = 0.7  # multiplicative decrease (TCP CUBIC uses 0.7, Reno 0.5)


class AdaptiveLimit:
    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0
        self._epoch = 0  # bumped by every decrease
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def current(self) -> int:
        return int(self.limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold one of the `current` slots; yields the epoch to pass to `overloaded`."""
        await self._acquire()
        try:
            yield self._epoch
        finally:
            self.in_flight -= 1
            self._wake()

    def overloaded(self, epoch: int) -> bool:
        """An overload answer to a call that held its slot in `epoch`; True if the limit was lowered."""
        if epoch != self._epoch or self.limit <= 1:
            return False
        self._epoch += 1
        self.limit = max(1.0, self.limit * DECREASE)
        return True

    def succeeded(self) -> None:
        if self.limit >= self.ceiling:
            return
        before = self.current
        self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
        if self.current > before:
            self._wake()

    async def _acquire(self) -> None:
        if not self._waiters and self.in_flight < self.current:
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # the slot is counted by whoever wakes us
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # woken, then cancelled before running: give it back
                self.in_flight -= 1
                self._wake()
            else:
                with contextlib.suppress(ValueError):  # already dropped by `_wake`
                    self._waiters.remove(fut)
            raise

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.current:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)
