"""Adaptive concurrency: an endpoint that answers "overloaded" gets fewer calls at once.

Against the real TGI-protocol server with TGI's bounded queue (`max_concurrent_requests`:
beyond it, 429 "Model is overloaded"), over real HTTP; plus the limit's own rules.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable

from hfadvisor.config import RetryPolicy, Sampling
from hfadvisor.ledger import Ledger
from hfadvisor.llm import EndpointSpec, LLMClient
from hfadvisor.llm.limit import DECREASE, AdaptiveLimit
from hfadvisor.serve.backend import Generation, GenerationRequest
from tests.servers.tgi import ScriptedBackend, running_tgi

WAIT = 120.0  # seconds to wait for a state the test drives towards (reached only if broken)
FAST_RETRY = RetryPolicy(initial_backoff=0.02, max_backoff=0.1, max_attempts=100, give_up_after=120)


class FixedLimit(AdaptiveLimit):
    """The same slots without adapting: what a plain semaphore of `--concurrency` does."""

    def overloaded(self, epoch: int) -> bool:
        return False


class HoldingBackend(ScriptedBackend):
    """Admitted calls wait until the test releases them: an endpoint saturated for as long as the test
    needs, so what is compared is what each client does while it is saturated, not how fast anything is."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.held = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.held += 1
        while not self.release.is_set():
            await asyncio.sleep(0.005)
        self.held -= 1
        return await super().generate(request)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        await asyncio.sleep(0.005)


async def saturate(server, limit: AdaptiveLimit | None) -> tuple[Ledger, int]:
    """40 calls at an endpoint that admits 4 and holds them. Returns the ledger and how many calls the
    endpoint refused while it held the 4 (once the client settled, or once a storm of 100 was seen)."""
    backend: HoldingBackend = server.backend
    backend.release.clear()
    async with LLMClient(EndpointSpec.of(server.url, concurrency=16, retry=FAST_RETRY)) as client:
        if limit is not None:
            client._limit = limit
        calls = [
            asyncio.create_task(client.complete(f"prompt {i}", Sampling(max_new_tokens=8), stage="generate"))
            for i in range(40)
        ]
        await until(lambda: backend.held == 4, "the endpoint being saturated")
        if limit is None:  # adaptive: lowered to what the endpoint admits, nothing in flight but the 4
            await until(lambda: client._limit.current <= 4 and client._limit.in_flight == 4, "the client settling")
        else:  # fixed: the other 12 slots keep asking
            await until(lambda: client.ledger.rate_limited >= 100, "a retry storm")
        refused = sum(1 for r in server.requests if r.method == "POST") - 4
        backend.release.set()
        outs = await asyncio.gather(*calls)
        assert len(outs) == 40 and all(o.text for o in outs)
        return client.ledger, refused


def test_overload_answers_lower_the_limit_and_stop_the_retry_storm():
    with running_tgi(HoldingBackend(), max_concurrent_requests=4) as server:
        adaptive, adaptive_refused = asyncio.run(saturate(server, None))
        server.requests.clear()
        fixed, fixed_refused = asyncio.run(saturate(server, FixedLimit(16)))
    assert adaptive.requests == fixed.requests == 40 and adaptive.failures == fixed.failures == 0
    # adaptive: lowered once per burst of refusals (16 -> 11 -> 7 -> 5 -> 3 slots), then, with the endpoint
    # still saturated, it sent nothing more: refused 12 + 7 + 3 + 1 calls (+ a few retries racing a decrease)
    assert adaptive.throttled >= 4 and adaptive_refused <= 30, adaptive_refused
    assert fixed.throttled == 0 and fixed_refused >= 100  # the fixed limit never stops asking


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
        await asyncio.wait_for(c, WAIT)  # without giving the slot back, c would wait forever
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
