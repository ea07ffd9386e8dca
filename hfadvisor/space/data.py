"""What the Space shows, computed from an opened run with no UI code.

Kept apart from the Gradio layer so the same views serve the browser, the API
(`gradio_client`) and plain tests, and so opening a run never depends on a UI library.
Opening (a local directory or a Hub dataset repo) is `hfadvisor.space.sources`, re-exported
here; measuring runs against a shared category list is `hfadvisor.metrics.run`.
"""

from __future__ import annotations

import difflib
import html
import io
import itertools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hfadvisor.records import Revision
from hfadvisor.rundir.store import RunStore
from hfadvisor.space.sources import (
    HUB_ID_RE,
    SAMPLE_COLUMNS,
    HubSource,
    RunView,
    SpaceError,
    classify_source,
    labels_for_round,
    open_hub,
    open_local,
    open_source,
    read_labels,
)
from hfadvisor.stages.text import normalize

# opening a run lives in `sources`; these names stay importable from here
__all__ = [
    "HUB_ID_RE",
    "SAMPLE_COLUMNS",
    "HubSource",
    "RunView",
    "SpaceError",
    "classify_source",
    "labels_for_round",
    "open_hub",
    "open_local",
    "open_source",
    "read_labels",
]

REJECT_COLUMNS = ["id", "round", "stage", "reason", "text"]
UNTARGETED = "(untargeted: self-instruct)"
SOURCES = ("all", "seed", "advisor", "baseline")
TIMELINE_COLUMNS = [
    "round",
    "weakness",
    "rows",
    "total rows",
    "rejects",
    "reject reasons",
    "summary",
    "summary lines",
    "seconds",
]


# ---------------------------------------------------------------------------------------------- timeline
def _reasons(rev: Revision) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in sorted(rev.reject_reasons.items()))


def weakness_text(rev: Revision) -> str:
    if rev.round == 0:
        return "(seeds)"
    return rev.targeted or ("(self-instruct: no weakness)" if rev.mode == "baseline" else "—")


def timeline(view: RunView) -> pd.DataFrame:
    """One line per round: what it targeted, what it added, what it rejected, how the summary changed."""
    return timeline_of(view.revisions, _labelled_counts(view))


def timeline_of(revisions: list[Revision], labelled: dict[int, int] | None = None) -> pd.DataFrame:
    total = 0
    records = []
    for rev in revisions:
        total += rev.rows
        rec: dict[str, Any] = {
            "round": rev.round,
            "weakness": weakness_text(rev),
            "rows": rev.rows,
            "total rows": total,
            "rejects": rev.rejects,
            "reject reasons": _reasons(rev),
            "summary": rev.summary_source,
            "summary lines": len(rev.summary_after),
            "seconds": round(rev.timings.total, 1),
        }
        if labelled is not None:
            rec["labelled"] = labelled.get(rev.round, 0)
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=TIMELINE_COLUMNS + (["labelled"] if labelled is not None else []))


def _labelled_counts(view: RunView) -> dict[int, int] | None:
    if view.labels is None or "round" not in view.labels.columns:
        return None
    ids = view.labels.drop_duplicates("id") if "id" in view.labels.columns else view.labels
    return {int(k): int(v) for k, v in ids["round"].dropna().value_counts().items()}


def summary_diff(rev: Revision) -> list[tuple[str, str]]:
    """(op, line) pairs from the summary before the round to after it: op in ' ', '+', '-'."""
    before, after = rev.summary_before, rev.summary_after
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [(" ", line) for line in before[i1:i2]]
        else:
            out += [("-", line) for line in before[i1:i2]]
            out += [("+", line) for line in after[j1:j2]]
    return out


def summary_diff_html(rev: Revision) -> str:
    """The diff as escaped HTML (summary lines are model text: never trusted as markup)."""
    if rev.round == 0:
        lines = [(" ", line) for line in rev.summary_after]
        head = "Seed summary" if lines else "No summary (Self-Instruct keeps none)"
    elif rev.mode == "baseline":
        return '<div class="summary-diff"><p>Self-Instruct rounds keep no summary.</p></div>'
    else:
        lines = summary_diff(rev)
        added = sum(op == "+" for op, _ in lines)
        removed = sum(op == "-" for op, _ in lines)
        head = f"Summary after round {rev.round}: +{added} / −{removed} lines ({html.escape(rev.summary_source)})"
    cls = {" ": "same", "+": "added", "-": "removed"}
    body = "".join(
        f'<div class="{cls[op]}"><span class="op">{html.escape(op)}</span> {html.escape(line)}</div>'
        for op, line in lines
    )
    note = f'<p class="note">{html.escape(rev.summary_note)}</p>' if rev.summary_note else ""
    return f'<div class="summary-diff"><p class="head">{head}</p>{body}{note}</div>'


def round_markdown(view: RunView, r: int) -> str:
    """Counts, rejects, timings and plugin sections of one round (model text escaped)."""
    from hfadvisor.card import md

    rev = view.revision(r)
    total = sum(x.rows for x in view.revisions[: r + 1])
    planned = rev.rounds_planned or view.revisions[-1].rounds_planned or view.last_round
    lines = [
        f"### Round {r} of {planned}",
        "",
        "| | this round |",
        "|---|---|",
        f"| weakness targeted | {md(weakness_text(rev))} |",
        f"| rows added / total | {rev.rows} / {total} |",
        f"| rejected | {rev.rejects}{' (' + md(_reasons(rev)) + ')' if rev.rejects else ''} |",
        f"| summary update | {md(rev.summary_source)} |",
        f"| model | {md(rev.model)} |",
        f"| requests / retries / failures | {rev.ledger.requests} / {rev.ledger.retries} / {rev.ledger.failures} |",
    ]
    if rev.ledger.rate_limited:
        lines.append(
            f"| overload answers / times concurrency lowered | {rev.ledger.rate_limited} / {rev.ledger.throttled} |"
        )
    lines.append(f"| seconds | {rev.timings.total:.1f} |")
    labels = labels_for_round(view, r)
    if labels is not None:
        lines.append(f"| human labels | {len(labels)} |")
    for section in rev.sections:  # plugin markdown: already escaped by its plugin
        lines += ["", f"#### {md(section.title)}", "", section.markdown]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- samples
def samples(view: RunView, r: int, *, query: str = "", source: str = "all", cumulative: bool = False) -> pd.DataFrame:
    """Rows of round r (or rounds 0..r), filtered by a case-insensitive text search and by source."""
    view.revision(r)
    rows = view.rows
    rows = rows[rows["round"] <= r] if cumulative else rows[rows["round"] == r]
    if source and source != "all":
        rows = rows[rows["source"] == source]
    q = query.strip().lower()
    if q:
        hay = rows["prompt"].fillna("").str.lower() + "\n" + rows["weakness"].fillna("").str.lower()
        rows = rows[hay.str.contains(q, regex=False)]
    out = rows[SAMPLE_COLUMNS].reset_index(drop=True)
    out["weakness"] = [(_text(w) or None) for w in out["weakness"]]  # NaN is not a category
    return out


def rejects_of(view: RunView, r: int) -> pd.DataFrame:
    rej = view.rejects
    if not len(rej):
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return rej[rej["round"] == r][REJECT_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- coverage
# Scalar metrics (from the metrics plugin's `extra["metrics"]`) plotted over rounds, with their labels.
METRIC_LABELS = {
    "distinct_2": "distinct-2",
    "vendi": "Vendi score",
    "mean_cosine_distance": "mean cosine distance",
    "near_duplicate_rate": "near-duplicate rate",
}


def _text(value: Any) -> str:
    """A cell as text: None and pandas' NaN (missing weakness of Self-Instruct rows) become ''."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def category_of(weakness: str | None) -> str:
    return _text(weakness) or UNTARGETED


def has_metrics(view: RunView) -> bool:
    """True when every generated round carries the metrics plugin's category assignment (the seed
    round is written before plugins run)."""
    generated = view.revisions[1:]
    return bool(generated) and all(
        isinstance(rev.extra.get("metrics"), dict) and "categories_covered" in rev.extra["metrics"] for rev in generated
    )


def coverage(view: RunView) -> pd.DataFrame:
    """Per round: total rows, categories covered, summary lines and diversity.

    Categories covered come from the metrics plugin when the run has them (every row assigned
    to the closest summary line by embeddings, so a Self-Instruct baseline is measured the same
    way); otherwise they are the distinct categories rows were written for (seeds included).
    """
    use_metrics = has_metrics(view)
    seen: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    n_bigrams = 0
    total = 0
    out = []
    by_round = {int(k): g for k, g in view.rows.groupby("round")} if len(view.rows) else {}
    for rev in view.revisions:
        g = by_round.get(rev.round)
        if g is not None:
            total += len(g)
            seen.update(normalize(_text(w)) for w in g["weakness"] if _text(w))
            for prompt in g["prompt"].fillna(""):
                words = str(prompt).lower().split()
                pairs = list(itertools.pairwise(words))
                n_bigrams += len(pairs)
                bigrams.update(pairs)
        metrics = rev.extra.get("metrics") if isinstance(rev.extra.get("metrics"), dict) else {}
        rec: dict[str, Any] = {
            "round": rev.round,
            "rows": total,
            # the seed round has no metrics: no point rather than a number measured another way
            "categories covered": (int(metrics["categories_covered"]) if metrics else None)
            if use_metrics
            else len(seen),
            "categories total": metrics.get("categories_total") if use_metrics else None,
            "summary lines": len(rev.summary_after) if view.info.mode == "advisor" else None,
            "distinct-2": round(len(bigrams) / n_bigrams, 4) if n_bigrams else None,
        }
        for key, label in METRIC_LABELS.items():
            value = metrics.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                rec[label] = float(value)
        out.append(rec)
    return pd.DataFrame.from_records(out)


def coverage_basis(view: RunView) -> str:
    if has_metrics(view):
        return "rows assigned to the closest summary line (metrics)"
    return "distinct categories rows were written for"


def rows_per_category(view: RunView, upto: int | None = None) -> pd.DataFrame:
    """Rows per category in rounds 0..upto, largest first: the metrics plugin's assignment when the
    round has one, else the category each row was written for."""
    upto = view.last_round if upto is None else upto
    metrics = view.revision(upto).extra.get("metrics")
    per_cat = metrics.get("rows_per_category") if isinstance(metrics, dict) else None
    if isinstance(per_cat, dict) and per_cat:
        counts = pd.Series({str(k): int(v) for k, v in per_cat.items()}).sort_values(ascending=False, kind="stable")
    else:
        rows = view.rows[view.rows["round"] <= upto]
        counts = rows["weakness"].map(category_of).value_counts()
    return pd.DataFrame({"category": counts.index, "rows": counts.to_numpy()})


@dataclass
class SharedMeasure:
    """Runs re-measured against one category list (`hfadvisor.metrics.run`): the fair comparison, since
    each card's own numbers assign rows to that run's own summary."""

    categories: list[str]
    basis: str
    series: list[pd.DataFrame]  # per run, one line per round (rows, categories_covered, distinct_2, ...)
    rows_per_category: list[dict[str, int]]  # per run, at its last round


def shared_measure(views: list[RunView]) -> SharedMeasure | None:
    """Measure every run against the union of the runs' summaries; None without the metrics extra."""
    from hfadvisor.errors import MissingDependencyError

    try:
        from hfadvisor.metrics.embed import shared_embedder
        from hfadvisor.metrics.run import measure_runs

        embedder = shared_embedder()
    except (ImportError, MissingDependencyError):
        return None
    stores = [RunStore.open(v.path, repair=False, verify=False) for v in views]
    measured = measure_runs(stores, embedder=embedder)
    return SharedMeasure(
        categories=measured.categories,
        basis=measured.basis,
        series=[
            pd.DataFrame.from_records([{k: v for k, v in s.items() if k != "rows_per_category"} for s in run])
            for run in measured.series
        ],
        rows_per_category=[dict(run[-1].get("rows_per_category") or {}) for run in measured.series],
    )


def compare_table(views: list[RunView], shared: SharedMeasure | None = None) -> pd.DataFrame:
    """One line per run: the figures that tell an advisor run from a baseline at a glance."""
    records = []
    for i, v in enumerate(views):
        cov = coverage(v)
        last = cov.iloc[-1]
        rec: dict[str, Any] = {
            "run": v.label,
            "mode": v.info.mode,
            "rounds": v.last_round,
            "rows": int(last["rows"]),
            "rejects": int(sum(r.rejects for r in v.revisions)),
        }
        if shared is not None:
            final = shared.series[i].iloc[-1]
            rec["categories covered (shared list)"] = f"{int(final['categories_covered'])} of {len(shared.categories)}"
            rec["distinct-2"] = round(float(final["distinct_2"]), 3)
            rec["Vendi score"] = round(float(final["vendi"]), 2)
        else:
            covered = last["categories covered"]
            rec["categories covered (own card)"] = None if pd.isna(covered) else int(covered)
            rec["distinct-2"] = None if pd.isna(last["distinct-2"]) else round(float(last["distinct-2"]), 3)
        records.append(rec)
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------------------------------------- export
def zip_run(path: Path, dest_dir: Path) -> Path:
    """The run directory as one zip (what a user downloads), skipping quarantine and temp files."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{path.name}.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                z.write(f, f"{path.name}/{rel}")
    target.write_bytes(buf.getvalue())
    return target
