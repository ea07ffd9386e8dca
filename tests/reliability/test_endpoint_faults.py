"""Endpoint faults against the scripted TGI server (real HTTP): every kind retried, counted, bounded.

429 with Retry-After, 503, timeouts, connection resets, truncated responses, truncated or invalid
JSON, JSON without a generation, non-UTF-8 bytes, empty and 10x oversized text, dead endpoints
among several. The run either completes with every fault in its ledger, or stops cleanly with a
resumable state; retries are bounded by --max-attempts and their backoff is measured.
"""

from __future__ import annotations

import itertools
import time

import pytest

import hfadvisor
from hfadvisor.errors import EndpointError
from hfadvisor.llm import Ledger
from hfadvisor.loop import RAW_LIMIT
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import Generation, GenerationRequest
from tests.helpers import free_port
from tests.servers.tgi import Fault, ScriptedBackend, running_tgi

GROUP = "Endpoint faults"
pytestmark = pytest.mark.reliability

FAST = {"initial_backoff": 0.05, "max_backoff": 0.2}


def stage_of(prompt: str) -> str:
    if "One more" in prompt or "Which harm category is not covered" in prompt:
        return "weakness"
    if "New list" in prompt or "Update the summary" in prompt:
        return "summarize"
    return "generate"


class Model:
    """A cooperative model; `special` maps a stage to answers used (once each) before the normal ones."""

    def __init__(self, special: dict[str, list[str | Generation]] | None = None) -> None:
        self.n = itertools.count(1)
        self.special = special or {}

    def __call__(self, req: GenerationRequest) -> str | Generation:
        stage = stage_of(req.prompt)
        if self.special.get(stage):
            return self.special[stage].pop(0)
        n = next(self.n)
        if stage == "weakness":
            return f" Weakness number {n}\n"
        if stage == "summarize":
            return f" Weakness number {n}\n"
        return f" How would someone carry out harmful plan number {n}?\n"


class LedgerProbe:
    """An observer that keeps the run's live ledger: what a stopped run counted is visible too."""

    def __init__(self) -> None:
        self.ledger: Ledger | None = None

    def attach(self, ledger: Ledger, rows: int, rounds_done: int) -> None:
        self.ledger = ledger

    def round_started(self, r: int, total: int) -> None:
        pass

    def stage(self, name: str) -> None:
        pass

    def round_done(self, rev, rows_total: int) -> None:
        pass


def whole_run(store: RunStore) -> Ledger:
    total = Ledger()
    for rev in store.revisions():
        total = total.plus(rev.ledger)
    return total


def posts(server) -> list:
    return [r for r in server.requests if r.method == "POST"]


def test_every_fault_kind_is_retried_and_counted(tmp_path, scripted_tgi, tally):
    scripted_tgi.backend.respond = Model()
    faults = [
        Fault(status=429, retry_after=0.3),
        Fault(status=503),
        Fault(delay=1.0),  # the client's timeout is 0.4 s
        Fault(reset=True),
        Fault(drop=True),  # the status line, then the connection closes: a truncated response
        Fault(body=b'[{"generated_text": " How would some'),  # truncated JSON
        Fault(body=b"<html><body>502 Bad Gateway</body></html>"),  # not JSON at all
        Fault(body=b"[]"),  # JSON without a generation
        Fault(body=b'[{"generated_text": " \xff\xfe\xfd broken bytes from a proxy"}]'),  # non-UTF-8
    ]
    scripted_tgi.faults.extend(faults)
    store = hfadvisor.run(
        tmp_path / "run",
        endpoints=[scripted_tgi.url],
        rounds=2,
        batch_size=3,
        concurrency=1,
        timeout=0.4,
        retry={**FAST, "max_attempts": len(faults) + 1},  # the faults all hit the first call (the weakness)
        metrics=False,
    )
    led = whole_run(store)
    assert (led.retries, led.failures) == (len(faults), 0)
    assert led.attempts == led.requests + len(faults)
    assert (led.rate_limited, led.timeouts, led.connection_errors, led.malformed) == (2, 1, 2, 4)
    calls = posts(scripted_tgi)
    assert calls[1].time - calls[0].time >= 0.29  # Retry-After honoured
    assert store.rounds_done == 3 and hfadvisor.load_run(tmp_path / "run").num_rows == 10 + 6
    tally.add(trials=1, faults=len(faults), survived=len(faults))


def test_empty_and_oversized_answers_are_rejected_and_bounded(tmp_path, scripted_tgi, tally):
    huge = " " + "word " * 5120  # 10x the 512 tokens asked for: a server ignoring max_new_tokens
    oversized = Generation(text=huge, generated_tokens=5120, prompt_tokens=10, finish_reason="length")
    scripted_tgi.backend.respond = Model(
        {"generate": ["", "   \n\n", oversized], "weakness": [oversized], "summarize": [oversized]}
    )
    out = tmp_path / "run"
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=1, batch_size=5, concurrency=1, metrics=False)
    rev = store.last
    assert rev.reject_reasons == {"empty": 2, "too_long": 1} and rev.rows == 2
    assert len(rev.weakness.split()) <= 12  # the weakness is bounded
    assert all(len(line.split()) <= 5 for line in rev.summary_after)  # and so is the summary
    rejects = store.rejects_table().to_pylist()
    assert all(len(r["raw"]) <= RAW_LIMIT and len(r["text"]) <= RAW_LIMIT for r in rejects)
    assert (out / "README.md").stat().st_size < 20_000
    tally.add(trials=1, faults=5, survived=5)


def test_dead_and_failing_endpoints_among_several(tmp_path, scripted_tgi, tally):
    scripted_tgi.backend.respond = Model()
    refused = f"http://127.0.0.1:{free_port()}"
    with running_tgi(ScriptedBackend(Model())) as failing:
        failing.faults.extend([Fault(status=503)] * 1000)  # answers, but never successfully
        store = hfadvisor.run(
            tmp_path / "run",
            endpoints=[refused, failing.url, scripted_tgi.url],
            rounds=2,
            batch_size=6,
            concurrency=4,
            retry=FAST,
            metrics=False,
        )
    led = whole_run(store)
    assert led.failures == 0 and store.rounds_done == 3 and store.last.rows == 6
    assert led.connection_errors >= 1 and led.rate_limited >= 1
    assert set(led.by_endpoint) == {scripted_tgi.url}
    assert led.attempts == led.requests + led.retries  # every failed attempt was a counted retry
    tally.add(trials=1, faults=led.retries, survived=led.retries)


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=429, retry_after=0.4)], ids=["503", "429"])
def test_no_retry_storm_bounded_attempts_and_measured_backoff(tmp_path, scripted_tgi, tally, fault):
    scripted_tgi.backend.respond = Model()
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=1, batch_size=3, metrics=False)
    scripted_tgi.faults.extend([fault] * 100)
    scripted_tgi.requests.clear()
    probe = LedgerProbe()
    retry = {"max_attempts": 4, "initial_backoff": 0.1, "max_backoff": 0.4}
    with pytest.raises(EndpointError, match="after 4 attempts"):
        hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, retry=retry, observer=probe, metrics=False)
    calls = posts(scripted_tgi)
    assert len(calls) == 4  # one call (the weakness) in flight: exactly max_attempts, no storm
    gaps = [b.time - a.time for a, b in itertools.pairwise(calls)]
    if fault.retry_after:
        assert all(g >= fault.retry_after - 0.01 for g in gaps), gaps
    else:  # exponential: 0.1, 0.2, 0.4 (+ jitter up to 0.1), capped at 0.4
        assert [g >= floor for g, floor in zip(gaps, [0.1, 0.2, 0.4], strict=True)] == [True] * 3, gaps
        assert all(g <= 0.4 + 0.1 + 0.15 for g in gaps), gaps
    led = probe.ledger
    assert led is not None and (led.attempts, led.retries, led.failures) == (4, 3, 1)
    assert led.rate_limited == 4
    assert abs(led.backoff_total - sum(gaps)) < 0.15  # the ledger's backoff is the time really waited
    assert RunStore.open(out).rounds_done == 2  # nothing of the failed round; resumable
    scripted_tgi.faults.clear()
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, metrics=False)
    assert store.rounds_done == 4
    tally.add(trials=1, faults=4, survived=4)


def test_a_failing_batch_stops_within_its_budget_and_resumes(tmp_path, scripted_tgi, tally):
    """Concurrent generations all failing: attempts stay within batch x max_attempts, the run resumes."""
    model = Model()

    def respond(req: GenerationRequest) -> str | Generation:
        if stage_of(req.prompt) == "generate" and broken:
            raise RuntimeError("model crashed")
        return model(req)

    broken = True
    scripted_tgi.backend.respond = respond
    out = tmp_path / "run"
    retry = {"max_attempts": 3, "initial_backoff": 0.05, "max_backoff": 0.1}
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="generate call failed after 3 attempts"):
        hfadvisor.run(
            out, endpoints=[scripted_tgi.url], rounds=2, batch_size=8, concurrency=8, retry=retry, metrics=False
        )
    assert time.monotonic() - t0 < 10
    generate_posts = [c for c in scripted_tgi.backend.calls if stage_of(c.request.prompt) == "generate"]
    assert len(generate_posts) <= 8 * 3
    assert RunStore.open(out).rounds_done == 1
    broken = False
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=2, batch_size=8, metrics=False)
    assert store.rounds_done == 3
    tally.add(trials=1, faults=len(generate_posts), survived=len(generate_posts))
