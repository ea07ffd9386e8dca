"""Adaptive concurrency: an endpoint that answers "overloaded" gets fewer calls at once.

Against the real TGI-protocol server with TGI's bounded queue (`max_concurrent_requests`:
beyond it, 429 "Model is overloaded"), over real HTTP; plus the limit's own rules.
"""

from __future__ import annotations

import asyncio
import math

from hfadvisor.config import RetryPolicy, Sampling
from hfadvisor.llm.client import LLMClient
from hfadvisor.llm.ledger import Ledger
from hfadvisor.llm.limit import DECREASE, AdaptiveLimit
from tests.servers.tgi import ScriptedBackend, running_tgi

FAST_RETRY = RetryPolicy(initial_backoff=0.02, max_backoff=0.1, max_attempts=100, give_up_after=120)


class FixedLimit(AdaptiveLimit):
    """The same slots without adapting: what a plain semaphore of `--concurrency` does."""

    def overloaded(self, epoch: int) -> bool:
        return False


async def burst(url: str, calls: int, limit: AdaptiveLimit | None = None) -> tuple[Ledger, int]:
    async with LLMClient([url], concurrency=16, retry=FAST_RETRY) as client:
        if limit is not None:
            client._limit = limit
        outs = await asyncio.gather(
            *(client.complete(f"prompt {i}", Sampling(max_new_tokens=8), stage="generate") for i in range(calls))
        )
        assert len(outs) == calls and all(o.text for o in outs)
        return client.ledger, client._limit.current


def test_overload_answers_lower_the_limit_and_cut_the_retry_storm():
    backend = ScriptedBackend()
    backend.delay = 0.05
    with running_tgi(backend, max_concurrent_requests=4) as server:
        adaptive, current = asyncio.run(burst(server.url, 120))
        fixed, _ = asyncio.run(burst(server.url, 120, FixedLimit(16)))
    # every call succeeded both ways; the adaptive client lowered its limit from 16, repeatedly
    assert adaptive.requests == fixed.requests == 120 and adaptive.failures == fixed.failures == 0
    assert adaptive.throttled >= 2 and adaptive.concurrency == current and current < 16
    assert fixed.throttled == 0
    # the point of it: far fewer overload answers (each one a wasted request and a backoff)
    assert adaptive.rate_limited * 2 < fixed.rate_limited, (adaptive.rate_limited, fixed.rate_limited)


def test_lowers_once_per_burst_never_below_one_and_creeps_back():
    limit = AdaptiveLimit(16)
    assert limit.overloaded(0) and limit.current == int(16 * DECREASE)
    assert not limit.overloaded(0)  # another answer of the same burst: already lowered for it
    decreases = 1 + sum(limit.overloaded(limit._epoch) for _ in range(20))
    assert limit.current == 1 and decreases == math.ceil(math.log(1 / 16, DECREASE))
    successes = 0
    while limit.current < 4:
        limit.succeeded()
        successes += 1
    assert 4 <= successes <= 8  # +1/limit per success: about `limit` successes per step
    for _ in range(1000):
        limit.succeeded()
    assert limit.current == 16  # never above --concurrency


def test_waiters_are_served_in_order_and_a_cancelled_waiter_is_skipped():
    async def go() -> list[int]:
        limit = AdaptiveLimit(2)
        limit.overloaded(0)  # one slot
        order: list[int] = []
        gate = asyncio.Event()

        async def call(i: int) -> None:
            async with limit.slot():
                order.append(i)
                await gate.wait()

        tasks = [asyncio.create_task(call(i)) for i in range(4)]
        await asyncio.sleep(0.01)
        assert order == [0] and limit.in_flight == 1
        tasks[1].cancel()  # a waiter gives up
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limit.in_flight == 0
        return order

    assert asyncio.run(go()) == [0, 2, 3]


def test_a_waiter_cancelled_right_after_its_turn_came_gives_the_slot_back():
    async def go() -> list[str]:
        limit = AdaptiveLimit(1)
        got: list[str] = []

        async def call(name: str) -> None:
            async with limit.slot():
                got.append(name)

        holder = limit.slot()
        await holder.__aenter__()
        b, c = asyncio.create_task(call("b")), asyncio.create_task(call("c"))
        await asyncio.sleep(0.01)
        await holder.__aexit__(None, None, None)  # b's turn: the slot is now counted for b...
        b.cancel()  # ...which is cancelled before it could run
        await asyncio.wait_for(c, 5)  # without giving the slot back, c would wait forever
        assert b.cancelled() and limit.in_flight == 0
        return got

    assert asyncio.run(go()) == ["c"]


def test_a_run_against_an_overloaded_endpoint_completes_and_its_card_says_so(tmp_path):
    import hfadvisor
    from tests.test_loop import Script

    backend = ScriptedBackend(Script())
    backend.delay = 0.05
    with running_tgi(backend, max_concurrent_requests=2) as server:
        store = hfadvisor.run(
            tmp_path / "run",
            endpoints=[server.url],
            rounds=2,
            batch_size=12,
            concurrency=12,
            retry={"initial_backoff": 0.02, "max_backoff": 0.1, "max_attempts": 100},
        )
    assert [r.rows for r in store.revisions()][1:] == [12, 12]
    total = store.last.ledger.plus(store.revision(1).ledger)
    assert total.throttled >= 1 and total.failures == 0 and 1 <= store.last.ledger.concurrency < 12
    card = (tmp_path / "run" / "README.md").read_text()
    assert "overload answers (429/503) / times concurrency lowered" in card
