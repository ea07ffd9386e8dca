"""Measurements of whole runs against one shared category list: what `compare` and the Space both show.

Fairness first: each run's cards assign rows to that run's own summary, which for an advisor
run contains its own weaknesses. Here every run is re-measured against one shared category
list (the union of the runs' seed summaries, final summaries and targeted weaknesses, or a
file of categories for a neutral taxonomy), round by round, with the same incremental metrics
as the cards (`MetricState`). No plotting and no report writing here, so a viewer can measure
runs without matplotlib or `hfadvisor.compare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfadvisor.errors import ConfigError
from hfadvisor.metrics.coverage import clean_categories

if TYPE_CHECKING:
    from hfadvisor.rundir.store import RunStore

Series = list[dict[str, Any]]  # one snapshot per round: rows, distinct_2, vendi, categories_covered, ...


def shared_categories(stores: list[RunStore], categories_file: Path | None = None) -> tuple[list[str], str]:
    """The category list every run is measured against, and one line saying where it came from."""
    from hfadvisor.presets import Preset

    if categories_file is not None:
        if not categories_file.is_file():
            raise ConfigError(f"--categories {categories_file}: no such file")
        lines = clean_categories(categories_file.read_text(encoding="utf-8").splitlines())
        if not lines:
            raise ConfigError(f"--categories {categories_file}: no category in it (one per line)")
        return lines, f"the {len(lines)} categories of {categories_file.name}"
    lines = []
    for store in stores:
        lines += Preset.model_validate(store.info.preset).seed_summary
        if store.info.mode == "advisor" and store.last is not None:
            lines += store.last.summary_after
            # every weakness targeted too: a small model's summary rewrite can drop or never add them
            lines += [w for rev in store.revisions() for w in (rev.weaknesses or [rev.weakness]) if w]
    cats = clean_categories(lines)
    return cats, (
        f"the union of the runs' seed summaries, final summaries and targeted weaknesses ({len(cats)} categories)"
    )


def measure(store: RunStore, embedder: Any, categories: list[str], upto: int | None = None) -> Series:
    """The metrics after every round (0..upto) of one run, against `categories` (cumulative, incremental).

    Per-category counts are kept for the last round only (all of them would be rounds × categories).
    """
    import pyarrow.parquet as pq

    from hfadvisor.metrics.state import MetricState

    state = MetricState(embedder, categories)
    series: Series = []
    for entry in store.index[: None if upto is None else upto + 1]:
        if entry.shard:
            state.add(pq.read_table(store.path / entry.shard, columns=["prompt"]).column("prompt").to_pylist())
        series.append({"round": entry.round, **state.snapshot()})
        if len(series) > 1:
            series[-2].pop("rows_per_category", None)
    return series


@dataclass
class RunsMeasured:
    """Runs measured against one category list, in the order given."""

    categories: list[str]
    basis: str  # where the categories came from, one line
    embedding_model: str
    series: list[Series]  # per run

    def final(self, i: int) -> dict[str, Any]:
        """Run i's numbers after its last measured round (with `rows_per_category`)."""
        return self.series[i][-1]


def measure_runs(
    stores: list[RunStore],
    *,
    categories_file: Path | None = None,
    upto: int | None = None,
    embedder: Any | None = None,
) -> RunsMeasured:
    """Measure every run against the shared category list (needs the `metrics` extra for the embedder)."""
    if upto is not None and upto < 0:
        raise ConfigError("--rounds must be ≥ 0")
    categories, basis = shared_categories(stores, categories_file)
    if embedder is None:
        from hfadvisor.metrics.embed import shared_embedder

        embedder = shared_embedder()
    return RunsMeasured(
        categories=categories,
        basis=basis,
        embedding_model=embedder.name,
        series=[measure(store, embedder, categories, upto) for store in stores],
    )
