"""Endpoint faults against the scripted TGI server (real HTTP): every kind retried, counted, bounded.

429 with Retry-After, 503, timeouts, connection resets, truncated responses, truncated or invalid
JSON, JSON without a generation, non-UTF-8 bytes, empty and 10x oversized text, dead endpoints
among several. The run either completes with every fault in its ledger, or stops cleanly with a
resumable state; retries are bounded by --max-attempts and their backoff is measured. Faults are
counted from the test server's own log; a fault is survived when the run's committed rows, read
from disk by the test, are what they must be. No test bounds how long anything takes: a timeout
is a call the server stalls for an hour, far beyond a client timeout no ordinary call comes near.
"""

from __future__ import annotations

import collections
import itertools
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import hfadvisor
from hfadvisor.errors import EndpointError
from hfadvisor.ledger import Ledger
from hfadvisor.loop import RAW_LIMIT
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import Generation, GenerationRequest
from tests.helpers import free_port
from tests.reliability.disk import check, committed
from tests.servers.tgi import Fault, ScriptedBackend, running_tgi

GROUP = "Endpoint faults"
UNITS = ("a run (or a run and its resume)", "one failed HTTP exchange the test server logged, or one dead endpoint")
pytestmark = pytest.mark.reliability

FAST = {"initial_backoff": 0.05, "max_backoff": 0.2}
TIMEOUT = 10.0  # the client's timeout: an ordinary scripted call takes milliseconds
STALL = 3600.0  # a stalled call: the server sits on it until the test ends


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


def faulted(server) -> int:
    """Exchanges the server answered with an injected fault (its own log, not the client's ledger)."""
    return sum(1 for r in posts(server) if r.fault is not None)


def rows_ok(out: Path, rounds: int, rows: int) -> bool:
    """The run has rounds 0..rounds-1 committed and `rows` distinct rows, read from disk by the test."""
    now = committed(out)
    problems, _ = check(out, now)
    return not problems and len(now) == rounds and sum(len(r.ids) for r in now.values()) == rows


def test_every_fault_kind_is_retried_and_counted(tmp_path, scripted_tgi, tally):
    scripted_tgi.backend.respond = Model()
    faults = [
        Fault(status=429, retry_after=0.3),
        Fault(status=503),
        Fault(delay=STALL),  # stalled far beyond the client's timeout: a certain timeout
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
        timeout=TIMEOUT,
        retry={**FAST, "max_attempts": len(faults) + 1},  # the faults all hit the first call (the weakness)
        metrics=False,
    )
    hit = faulted(scripted_tgi)
    tally.trial()
    tally.fault(survived=hit == len(faults) and rows_ok(tmp_path / "run", 3, 10 + 6), n=hit)
    led = whole_run(store)
    assert (led.retries, led.failures) == (len(faults), 0)
    assert led.attempts == led.requests + len(faults)
    assert (led.rate_limited, led.timeouts, led.connection_errors, led.malformed) == (2, 1, 2, 4)
    calls = posts(scripted_tgi)
    assert calls[1].time - calls[0].time >= 0.29  # Retry-After honoured
    assert hit == len(faults) and rows_ok(tmp_path / "run", 3, 10 + 6)


def test_empty_and_oversized_answers_are_rejected_and_bounded(tmp_path, scripted_tgi, tally):
    huge = " " + "word " * 5120  # 10x the 512 tokens asked for: a server ignoring max_new_tokens
    oversized = Generation(text=huge, generated_tokens=5120, prompt_tokens=10, finish_reason="length")
    scripted_tgi.backend.respond = Model(
        {"generate": ["", "   \n\n", oversized], "weakness": [oversized], "summarize": [oversized]}
    )
    out = tmp_path / "run"
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=1, batch_size=5, concurrency=1, metrics=False)
    reasons = collections.Counter(pq.read_table(out / "rejects").column("reason").to_pylist())
    tally.trial()
    tally.fault(survived=rows_ok(out, 2, 10 + 2) and reasons == {"empty": 2, "too_long": 1}, n=5)
    rev = store.last
    assert rev.reject_reasons == {"empty": 2, "too_long": 1} and rev.rows == 2
    assert len(rev.weakness.split()) <= 12  # the weakness is bounded
    assert all(len(line.split()) <= 5 for line in rev.summary_after)  # and so is the summary
    rejects = store.rejects_table().to_pylist()
    assert all(len(r["raw"]) <= RAW_LIMIT and len(r["text"]) <= RAW_LIMIT for r in rejects)
    assert (out / "README.md").stat().st_size < 20_000
    assert rows_ok(out, 2, 10 + 2) and reasons == {"empty": 2, "too_long": 1}


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
        refused_503 = faulted(failing)
    ok = rows_ok(tmp_path / "run", 3, 10 + 6 + 6) and refused_503 >= 1
    tally.trial()
    tally.fault(survived=ok, n=refused_503 + 1)  # the 503s the failing server logged, and the dead endpoint
    led = whole_run(store)
    assert ok and led.failures == 0
    assert led.connection_errors >= 1 and led.rate_limited == refused_503
    assert set(led.by_endpoint) == {scripted_tgi.url}
    assert led.attempts == led.requests + led.retries  # every failed attempt was a counted retry


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=429, retry_after=0.4)], ids=["503", "429"])
def test_no_retry_storm_bounded_attempts_and_measured_backoff(tmp_path, scripted_tgi, tally, fault):
    scripted_tgi.backend.respond = Model()
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=1, batch_size=3, metrics=False)
    before = committed(out)
    scripted_tgi.faults.extend([fault] * 100)
    scripted_tgi.requests.clear()
    probe = LedgerProbe()
    retry = {"max_attempts": 4, "initial_backoff": 0.1, "max_backoff": 0.4}
    with pytest.raises(EndpointError, match="after 4 attempts"):
        hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, retry=retry, observer=probe, metrics=False)
    calls = posts(scripted_tgi)
    assert len(calls) == 4  # one call (the weakness) in flight: exactly max_attempts, no storm
    gaps = [b.time - a.time for a, b in itertools.pairwise(calls)]
    # the waits, from below: Retry-After honoured, or exponential 0.1, 0.2, 0.4 (+ jitter), capped at 0.4
    floors = [fault.retry_after] * 3 if fault.retry_after else [0.1, 0.2, 0.4]
    assert [g >= floor - 0.01 for g, floor in zip(gaps, floors, strict=True)] == [True] * 3, gaps
    led = probe.ledger
    assert led is not None and (led.attempts, led.retries, led.failures) == (4, 3, 1)
    assert led.rate_limited == 4
    # the ledger's backoff is time really waited: at least the planned waits, at most the gaps between attempts
    assert sum(floors) - 0.03 <= led.backoff_total <= sum(gaps) + 0.01, (led.backoff_total, gaps)
    stopped_clean = committed(out) == before  # nothing of the failed round on disk
    scripted_tgi.faults.clear()
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, metrics=False)
    problems, lost = check(out, before)
    tally.trial()
    tally.fault(survived=stopped_clean and not problems and len(committed(out)) == 4, n=faulted(scripted_tgi))
    tally.lost(lost)
    assert stopped_clean and problems == [] and len(committed(out)) == 4


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
    with pytest.raises(EndpointError, match="generate call failed after 3 attempts"):
        hfadvisor.run(
            out, endpoints=[scripted_tgi.url], rounds=2, batch_size=8, concurrency=8, retry=retry, metrics=False
        )
    generate_posts = [c for c in scripted_tgi.backend.calls if stage_of(c.request.prompt) == "generate"]
    assert 3 <= len(generate_posts) <= 8 * 3  # the one that gave up tried 3 times; no call more than 3
    before = committed(out)
    stopped_clean = sorted(before) == [0]  # round 0 committed, nothing of the failed round 1
    broken = False
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=2, batch_size=8, metrics=False)
    problems, lost = check(out, before)
    tally.trial()
    tally.fault(survived=stopped_clean and not problems and len(committed(out)) == 3, n=len(generate_posts))
    tally.lost(lost)
    assert stopped_clean and problems == [] and len(committed(out)) == 3
