"""Structured output on the embedded model: reject rate and on-target rate with and without it.

    python -m benchmarks.structured --rounds 10            # ~5 min on 2 cores
    python -m benchmarks.structured --rounds 10 --json out.json

Runs of the same seed on the embedded SmolLM2-135M (served by `hfadvisor serve`, which
constrains decoding with xgrammar when a request carries a JSON schema), per prompt style
(`completion`, the embedded default, and `instruct`): `structured=off` (text path) and
`structured=on` (a JSON schema with every call). For each it prints, per generation: the reject rate and its reasons,
and the **on-target rate**, an automatic proxy of the human label of the same name: an accepted
row is on target when, of all the categories the run's rows were written for (seeds included),
its own weakness is the nearest to it by MiniLM cosine (the `metrics` extra's embedder). Chance
level is printed beside it. The 135M model shows the mechanics, not data quality.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import hfadvisor

SUMMARY_TOKENS = 256


def _on_target(rows: list[dict[str, Any]]) -> tuple[float, float, int]:
    """(on-target rate over generated rows, chance level, number of categories)."""
    from hfadvisor.metrics.embed import Embedder

    cats = sorted({r["weakness"] for r in rows if r["weakness"]})
    generated = [r for r in rows if r["source"] == "advisor"]
    if not generated or len(cats) < 2:
        return 0.0, 0.0, len(cats)
    emb = Embedder()
    cvec = emb.encode(cats)
    rvec = emb.encode([r["prompt"] for r in generated])
    nearest = (rvec @ cvec.T).argmax(axis=1)
    hits = sum(cats[int(i)] == r["weakness"] for i, r in zip(nearest, generated, strict=True))
    return hits / len(generated), 1 / len(cats), len(cats)


def measure(style: str, structured: str, rounds: int, batch: int, seed: int, workdir: Path) -> dict[str, Any]:
    out = workdir / f"run-{style}-{structured}"
    t0 = time.monotonic()
    # the summary update is capped alike in every case (the 135M model's full-list rewrites run on for
    # thousands of tokens); what is compared is the generations
    store = hfadvisor.run(
        out,
        rounds=rounds,
        batch_size=batch,
        seed=seed,
        prompt_style=style,
        structured=structured,
        metrics=False,
        sampling={"summarize": {"max_new_tokens": SUMMARY_TOKENS}},
    )
    wall = time.monotonic() - t0
    revs = list(store.revisions())[1:]
    rows = store.table().to_pylist()
    reasons: Counter[str] = Counter()
    for rev in revs:
        reasons.update(rev.reject_reasons)
    generations = sum(rev.rows + rev.rejects for rev in revs)
    rejects = sum(rev.rejects for rev in revs)
    on_target, chance, ncat = _on_target(rows)
    paths: Counter[str] = Counter()
    for rev in revs:
        for stage, counts in rev.ledger.by_stage.items():
            for path in ("structured", "text"):
                paths[f"{stage}:{path}"] += int(getattr(counts, path, 0) or 0)
    return {
        "style": style,
        "structured": structured,
        "rounds": len(revs),
        "generations": generations,
        "rows": generations - rejects,
        "rejects": rejects,
        "reject_rate": rejects / generations if generations else 0.0,
        "reject_reasons": dict(reasons.most_common()),
        "on_target_rate": on_target,
        "on_target_chance": chance,
        "categories": ncat,
        "summary_sources": dict(Counter(rev.summary_source for rev in revs)),
        "answer_paths": dict(paths),
        "seconds": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--cases",
        default="completion:off,completion:on,instruct:off,instruct:on",
        help="prompt style:structured pairs to run",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [c.split(":") for c in args.cases.split(",")]
        results = []
        for style, mode in cases:
            results.append(measure(style, mode, args.rounds, args.batch_size, args.seed, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    print(f"embedded SmolLM2-135M, {args.rounds} rounds × {args.batch_size}, seed {args.seed}")
    print(
        f"{'style':<11}{'structured':<11}{'generations':>12}{'rejects':>9}{'reject rate':>13}{'on target':>11}{'chance':>8}"
    )
    for r in results:
        print(
            f"{r['style']:<11}{r['structured']:<11}{r['generations']:>12}{r['rejects']:>9}{r['reject_rate']:>13.1%}"
            f"{r['on_target_rate']:>11.1%}{r['on_target_chance']:>8.1%}"
        )
        print(f"  reasons {r['reject_reasons']}  summary {r['summary_sources']}  paths {r['answer_paths']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
