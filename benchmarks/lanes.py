"""Advisor lanes (issue 15): `python -m benchmarks.lanes [--quick] [--no-embedded] [--json FILE]`.

1. Speed: time per accepted row at K = 1, 2, 4, 8 on the latency server (capacity 64, per-call
   latency + per-token cost), speed-up against K = 1 (target ≥ 0.85 × K while K × 12 ≤ 64).
2. Coverage at an equal budget of generations (K = 1 vs K = 4): categories covered, effective
   number of categories, Vendi, near-duplicate rate, against one shared category list
   (`hfadvisor.metrics.run`), on the embedded SmolLM2 model and on the latency server.
3. A projection of the paper's run (1000 rounds × 12 rows) for K = 1..8 with weakness 1 s,
   generation 8 s, summary growing linearly 2 → 30 s over the summary's lines, plus the per-round
   loop overhead measured in (1) — a model, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.latency_server import ServerProcess
from benchmarks.run import job

BATCH = 12
CAPACITY = 64


def speed(work: Path, rounds: int, per_call: float, per_token: float) -> dict[int, dict[str, Any]]:
    """Each K's run in its own process against a fresh server; rounds_wall from the first round's start
    to the last round's commit."""
    out: dict[int, dict[str, Any]] = {}
    for k in (1, 2, 4, 8):
        with ServerProcess(per_call=per_call, per_token=per_token, capacity=CAPACITY) as srv:
            args = {"url": srv.url, "out": str(work / f"speed-{k}"), "rounds": rounds, "batch_size": BATCH}
            r = job("run", {**args, "lanes": k, "metrics": False, "concurrency": CAPACITY}, 1800)
            st = srv.stats()
        waves = math.ceil(k * BATCH / CAPACITY)  # generation waves at this capacity
        # critical path in simulated seconds: a weakness wave, the generation waves, one summary call;
        # tokens: a weakness ~3, a request ~16, a summary ~5 per weakness (estimate of the answers' lengths)
        ideal = per_call * (2 + waves) + per_token * (3 + 16 * waves + 5 * k)
        per_round = r["rounds_wall"] / r["rounds"]
        out[k] = {
            "rows": r["rows"],
            "rounds": r["rounds"],
            "rounds_wall": r["rounds_wall"],
            "seconds_per_row": r["rounds_wall"] / max(r["rows"], 1),
            "per_round": per_round,
            "overhead": per_round - ideal,
            "server_busy_max": st["busy_max"],
            "requests": st["requests"],
        }
    base = out[1]["seconds_per_row"]
    for k, v in out.items():
        v["speedup"] = base / v["seconds_per_row"]
        v["speedup_over_k"] = v["speedup"] / k
    return out


def projection(overheads: dict[int, float], rows: int = 12_000) -> dict[int, dict[str, float]]:
    """Hours for `rows` rows (the paper: 1000 rounds × 12) at weakness 1 s, generation 8 s, summary
    2 → 30 s linear in the summary's lines (one line per weakness, 1000 lines at the end), for a server
    that serves all K × 12 generations at once; per-round overhead from the measurement (interpolated)."""
    measured = sorted(overheads)
    res: dict[int, dict[str, float]] = {}
    for k in range(1, 9):
        lo = max(m for m in measured if m <= k)
        hi = min(m for m in measured if m >= k)
        o = overheads[lo] if lo == hi else overheads[lo] + (overheads[hi] - overheads[lo]) * (k - lo) / (hi - lo)
        rounds = math.ceil(rows / (BATCH * k))
        total = 0.0
        for r in range(1, rounds + 1):
            lines = min(r * k, 1000)
            total += 1.0 + 8.0 + (2.0 + 28.0 * lines / 1000) + max(o, 0.0)
        res[k] = {"rounds": rounds, "hours": total / 3600, "overhead_s": o}
    base = res[1]["hours"]
    for v in res.values():
        v["speedup"] = base / v["hours"]
    return res


def coverage(stores: list[Any]) -> list[dict[str, Any]]:
    """Each run measured against one category list shared by all of them (`hfadvisor.metrics.run`),
    plus what the loop itself did: weaknesses targeted, rejects, the run's own summary length."""
    from hfadvisor.metrics.run import measure_runs

    m = measure_runs(stores)
    keys = ("rows", "categories_covered", "categories_total", "effective_categories", "vendi", "near_duplicate_rate")
    out = []
    for i, store in enumerate(stores):
        revs = [store.revision(x.round) for x in store.index if x.round > 0]
        weak = {w for rev in revs for w in (rev.weaknesses or [rev.weakness]) if w}
        extra = {
            "weaknesses": len(weak),
            "rejects": sum(rev.rejects for rev in revs),
            "summary_lines": len(revs[-1].summary_after) if revs else 0,
        }
        out.append({**{k: m.final(i).get(k) for k in keys}, **extra})
    return out


def coverage_latency(work: Path, generations: int, seed: int = 0) -> list[dict[str, Any]]:
    import hfadvisor
    from hfadvisor.rundir.store import RunStore

    stores = []
    for k in (1, 4):
        with ServerProcess(per_call=0.0, capacity=CAPACITY) as srv:
            out = work / f"cov-latency-{k}-{seed}"
            rounds = generations // (BATCH * k)
            hfadvisor.run(out, endpoints=[srv.url], rounds=rounds, lanes=k, metrics=False, seed=seed)
            stores.append(RunStore.open(out))
    return coverage(stores)


def coverage_embedded(work: Path, generations: int, seed: int = 0) -> list[dict[str, Any]]:
    import hfadvisor
    from hfadvisor.api import EMBEDDED_DEFAULTS
    from hfadvisor.rundir.store import RunStore
    from hfadvisor.serve.process import embedded_endpoint

    stores = []
    with embedded_endpoint() as url:  # one model process for both runs
        for k in (1, 4):
            out = work / f"cov-embedded-{k}-{seed}"
            hfadvisor.run(
                out,
                endpoints=[url],
                rounds=generations // (BATCH * k),
                lanes=k,
                metrics=False,
                sampling=EMBEDDED_DEFAULTS["sampling"],
                seed=seed,
            )
            stores.append(RunStore.open(out))
    return coverage(stores)


def _print_speed(
    sp: dict[int, dict[str, Any]], rounds: int, per_call: float, per_token: float, raw: dict[str, Any]
) -> None:
    print(f"Lanes on the latency server (capacity {CAPACITY}, {per_call}s/call + {per_token}s/token, {rounds} rounds)")
    print("| K | rows | s per accepted row | speed-up | speed-up / K | overhead s/round | target |")
    print("|---|---|---|---|---|---|---|")
    for k, v in sp.items():
        fits = k * BATCH <= CAPACITY
        verdict = ("ok" if v["speedup_over_k"] >= 0.85 else "MISSED") if fits and k > 1 else "—"
        print(
            f"| {k} | {v['rows']} | {v['seconds_per_row']:.4f} | {v['speedup']:.2f} | {v['speedup_over_k']:.2f} "
            f"| {v['overhead']:.3f} | {'≥ 0.85 × K ' + verdict if fits and k > 1 else '(K×12 > capacity)' if not fits else '—'} |"
        )
    proj = projection({k: v["overhead"] for k, v in sp.items()})
    raw["projection"] = proj
    print("\nProjection of the paper's run (12,000 rows; weakness 1 s, generation 8 s, summary 2→30 s):")
    print("| K | rounds | hours | speed-up |")
    print("|---|---|---|---|")
    for k, v in proj.items():
        print(f"| {k} | {v['rounds']} | {v['hours']:.2f} | {v['speedup']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter latencies")
    ap.add_argument("--no-embedded", action="store_true", help="skip the coverage runs on the embedded model")
    ap.add_argument("--json", type=Path, help="write the raw numbers here")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed runs (they need a quiet machine)")
    ap.add_argument("--generations", type=int, help="the equal budget of the coverage runs (default 96, quick 48)")
    ap.add_argument("--seeds", default="0", help="comma-separated run seeds of the embedded coverage runs")
    a = ap.parse_args(argv)
    rounds, per_call, per_token, gens = (3, 0.3, 0.002, 48) if a.quick else (6, 0.5, 0.002, 96)
    gens = a.generations or gens
    raw: dict[str, Any] = {"per_call": per_call, "per_token": per_token, "rounds": rounds, "batch": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sp = {} if a.no_speed else speed(work, rounds, per_call, per_token)
        raw["speed"] = sp
        if sp:
            _print_speed(sp, rounds, per_call, per_token, raw)
        seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
        for name, fn, runs in (
            ("latency server", coverage_latency, [0]),  # its answers ignore the weakness: one seed says it all
            ("embedded SmolLM2-135M", coverage_embedded, [] if a.no_embedded else seeds),
        ):
            if runs:
                print(f"\nCoverage at {gens} generations, {name} (K = 1 vs K = 4, one shared category list per seed):")
                print("| seed | K | rows | rejects | weaknesses | categories covered | effective categories | Vendi "
                      "| near-dup rate | summary lines |")  # fmt: skip
                print("|---|---|---|---|---|---|---|---|---|---|")
            for seed in runs:
                cov = fn(work, gens, seed)
                raw.setdefault(f"coverage {name}", {})[seed] = cov
                for k, c in zip((1, 4), cov, strict=True):
                    print(
                        f"| {seed} | {k} | {c['rows']} | {c['rejects']} | {c['weaknesses']} "
                        f"| {c.get('categories_covered')} of {c.get('categories_total')} "
                        f"| {c.get('effective_categories') or 0:.2f} | {c.get('vendi') or 0:.2f} "
                        f"| {c['near_duplicate_rate']:.3f} | {c['summary_lines']} |"
                    )
                sys.stdout.flush()
    if a.json:
        a.json.write_text(json.dumps(raw, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
