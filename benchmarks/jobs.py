"""One benchmark job per process: `python -m benchmarks.jobs JOB '{"json": "args"}'` → one JSON line.

Why processes: peak RSS must be a run's own (P4), and each measurement should start from a
cold, equal state (no event loop, caches or connections left over from the previous one).
hfadvisor is imported from this checkout, never installed elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


class Clock:
    """Observer that timestamps rounds (implements hfadvisor.loop.Observer)."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.revs: dict[int, Any] = {}

    def round_started(self, r: int, total: int) -> None:
        self.started.setdefault(r, time.monotonic())

    def stage(self, name: str) -> None:
        pass

    def round_done(self, rev: Any, rows_total: int) -> None:
        self.done[rev.round] = time.monotonic()
        self.revs[rev.round] = rev.timings


def _instrument() -> dict[int, dict[str, float]]:
    """Time card rendering and the store commit per round, by wrapping them (measurement only)."""
    from hfadvisor import card
    from hfadvisor.rundir.store import RunStore

    per_round: dict[int, dict[str, float]] = {}
    render, commit = card.render, RunStore.commit_round

    def timed_render(info: Any, rev: Any, *a: Any, **k: Any) -> str:
        t = time.perf_counter()
        try:
            return render(info, rev, *a, **k)
        finally:
            per_round.setdefault(rev.round, {})["render"] = time.perf_counter() - t

    def timed_commit(self: Any, rev: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return commit(self, rev, *a, **k)
        finally:
            per_round.setdefault(rev.round, {})["commit"] = time.perf_counter() - t

    card.render = timed_render  # type: ignore[assignment]
    RunStore.commit_round = timed_commit  # type: ignore[method-assign]
    return per_round


def round_bytes(out: Path, r: int) -> dict[str, int]:
    """Bytes written for round r: shards, card, revision record, and the README copy of the card."""
    name = f"round-{r:05d}"
    parts = {
        "data": out / "data" / f"{name}.parquet",
        "rejects": out / "rejects" / f"{name}.parquet",
        "card": out / "cards" / f"{name}.md",
        "revision": out / "revisions" / f"{name}.json",
    }
    sizes = {k: (p.stat().st_size if p.is_file() else 0) for k, p in parts.items()}
    sizes["readme"] = sizes["card"]  # README.md is rewritten with the card every round
    sizes["total"] = sum(sizes.values())
    return sizes


def job_run(a: dict[str, Any]) -> dict[str, Any]:
    """An advisor or baseline run; timings per round (P1, P2, P3, P4)."""
    import hfadvisor

    # Imports are excluded from every timing here, as distilabel_job.py excludes distilabel's:
    # `hfadvisor.run` resolves lazily, so load what a run loads before the clock starts.
    for module in ("api", "card", "loop", "plugins", "rundir.store", "llm.client"):
        importlib.import_module(f"hfadvisor.{module}")

    per_round = _instrument() if a.get("instrument") else {}
    clock = Clock()
    out = Path(a["out"])
    overrides = {
        k: a[k]
        for k in ("rounds", "batch_size", "concurrency", "pipeline_depth", "api", "metrics", "lanes", "sampling")
        if k in a
    }
    t0, cpu0 = time.monotonic(), time.process_time()
    store = hfadvisor.run(out, endpoints=[a["url"]], mode=a.get("mode", "advisor"), observer=clock, **overrides)
    t1 = time.monotonic()
    rounds = sorted(clock.done)
    first, last = rounds[0], rounds[-1]
    res: dict[str, Any] = {
        "wall": t1 - t0,
        "rounds_wall": clock.done[last] - clock.started[first],
        "rounds": len(rounds),
        "rows": sum(i.rows for i in store.index if i.round > 0),
        "rejects": sum(i.rejects for i in store.index),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "cpu": time.process_time(),
        "cpu_run": time.process_time() - cpu0,  # the run's CPU, imports excluded
    }
    res["constant"] = res["wall"] - res["rounds_wall"]
    timings = [clock.revs[r] for r in rounds]
    res["stage_mean"] = {
        k: sum(getattr(t, k) for t in timings) / len(timings)
        for k in ("weakness", "generate", "summarize", "write", "total")
    }
    # Per-round cost: interval between consecutive commits (rounds are committed in order).
    res["round_seconds"] = {
        r: clock.done[r] - clock.done[r - 1] if r - 1 in clock.done else clock.done[r] - clock.started[r]
        for r in rounds
    }
    for r in a.get("probe_rounds", []):
        res.setdefault("probe", {})[r] = {"bytes": round_bytes(out, r), **per_round.get(r, {})}
    if a.get("windows"):
        res["windows"] = {}
        for lo, hi in a["windows"]:
            rs = [r for r in range(lo, hi + 1) if r in clock.done and r - 1 in clock.done]
            res["windows"][f"{lo}-{hi}"] = {
                "seconds": sum(res["round_seconds"][r] for r in rs) / len(rs),
                "render": sum(per_round.get(r, {}).get("render", 0) for r in rs) / len(rs),
                "commit": sum(per_round.get(r, {}).get("commit", 0) for r in rs) / len(rs),
                "bytes": sum(round_bytes(out, r)["total"] for r in rs) / len(rs),
                "bytes_parts": {
                    k: sum(round_bytes(out, r)[k] for r in rs) / len(rs)
                    for k in ("data", "rejects", "card", "revision")
                },
                # what grows with the round number: the summary (one line per advisor round)
                "summary_lines": sum(len(store.revision(r).summary_after) for r in rs) / len(rs),
                "summary_bytes": sum(len("\n".join(store.revision(r).summary_after)) for r in rs) / len(rs),
            }
    res.pop("round_seconds")
    return res


def job_respond(a: dict[str, Any]) -> dict[str, Any]:
    """`hfadvisor respond` over a finished run (P2 response generation)."""
    from hfadvisor.llm import EndpointSpec
    from hfadvisor.respond import respond_run

    t0, cpu0 = time.monotonic(), time.process_time()
    target = EndpointSpec.of(a["url"], api=a.get("api", "chat"), concurrency=a["concurrency"])
    out = respond_run(a["out"], target, max_new_tokens=a["max_tokens"])
    return {
        "wall": time.monotonic() - t0,
        "rows": out.rows_answered_now,
        "requests": out.ledger.requests,
        "retries": out.ledger.retries,
        "cpu": time.process_time(),
        "cpu_run": time.process_time() - cpu0,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def job_prompts(a: dict[str, Any]) -> dict[str, Any]:
    """Write the prompts distilabel is given: the run's rows (answers) or Self-Instruct prompts (queries)."""
    from hfadvisor.presets import load_preset
    from hfadvisor.rundir.store import RunStore
    from hfadvisor.stages import selfinstruct

    store = RunStore.open(a["out"])
    prompts = store.table(columns=["prompt"]).column("prompt").to_pylist()[: a["n"]]
    if a["kind"] == "selfinstruct":  # the baseline's own prompt shape: 5 pool examples, "Request:"
        preset = load_preset("safety")
        prompts = [
            selfinstruct.build_prompt(
                preset, "completion", [{"prompt": p, "category": ""} for p in prompts[i : i + 5] or prompts[:5]]
            )
            for i in range(a["n"])
        ]
    Path(a["file"]).write_text(json.dumps(prompts))
    return {"n": len(prompts)}


def job_overhead(a: dict[str, Any]) -> dict[str, Any]:
    """Requests/s of LLMClient against a zero-latency endpoint, and of bare httpx2 for reference."""
    import httpx2

    from hfadvisor.config import Sampling
    from hfadvisor.llm import EndpointSpec, LLMClient

    n, conc, url = a["n"], a["concurrency"], a["url"]
    sampling = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=64, stop=["\n"])

    async def client_rate(api: str) -> tuple[float, float]:
        async with LLMClient(EndpointSpec.of(url, api=api, model="bench", concurrency=conc)) as c:
            await c.complete("warm up Request:", sampling, stage="g")
            t, cpu = time.monotonic(), time.process_time()
            await asyncio.gather(*(c.complete(f"p{i} Request:", sampling, stage="g", seed=i) for i in range(n)))
            return n / (time.monotonic() - t), (time.process_time() - cpu) / n

    async def raw_rate() -> tuple[float, float]:
        limits = httpx2.Limits(max_connections=conc, max_keepalive_connections=conc)
        body = {"parameters": {"max_new_tokens": 64, "details": True, "stop": ["\n"]}}
        async with httpx2.AsyncClient(limits=limits) as h:
            sem = asyncio.Semaphore(conc)

            async def one(i: int) -> None:
                async with sem:
                    r = await h.post(f"{url}/", json={"inputs": f"p{i} Request:", **body})
                    r.json()

            await one(-1)
            t, cpu = time.monotonic(), time.process_time()
            await asyncio.gather(*(one(i) for i in range(n)))
            return n / (time.monotonic() - t), (time.process_time() - cpu) / n

    tgi = asyncio.run(client_rate("tgi"))
    chat = asyncio.run(client_rate("chat"))
    raw = asyncio.run(raw_rate())
    return {
        "tgi_rps": tgi[0],
        "tgi_cpu_ms": tgi[1] * 1000,
        "chat_rps": chat[0],
        "chat_cpu_ms": chat[1] * 1000,
        "raw_rps": raw[0],
        "raw_cpu_ms": raw[1] * 1000,
    }


def job_push(a: dict[str, Any]) -> dict[str, Any]:
    """Push every round of a finished run to the Hub at HF_ENDPOINT, one commit + tag per round (P3)."""
    from hfadvisor.hub.publish import HubPublisher, PushedRound
    from hfadvisor.rundir.store import RunStore

    store = RunStore.open(a["out"])
    pushed: dict[int, PushedRound] = {}
    publisher = HubPublisher(a["repo"], private=True)
    publisher.connect()
    t0 = time.monotonic()
    publisher.push_pending(store, lambda p: pushed.__setitem__(p.round, p))
    res: dict[str, Any] = {"wall": time.monotonic() - t0, "rounds": len(pushed), "windows": {}}
    for lo, hi in a["windows"]:
        rs = [r for r in range(lo, hi + 1) if r in pushed]
        res["windows"][f"{lo}-{hi}"] = {
            "seconds": sum(pushed[r].seconds for r in rs) / len(rs),
            "bytes": sum(pushed[r].bytes for r in rs) / len(rs),
        }
    return res


JOBS = {"push": job_push, "run": job_run, "respond": job_respond, "prompts": job_prompts, "overhead": job_overhead}


def main() -> None:
    job, args = sys.argv[1], json.loads(sys.argv[2])
    result = JOBS[job](args)
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
