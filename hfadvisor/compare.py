"""Compare runs (e.g. Data Advisor vs the Self-Instruct baseline): a Markdown report with PNG plots.

Fairness first: each run's cards assign rows to that run's own summary, which for an
advisor run contains its own weaknesses. Here every run is re-measured against one shared
category list (the union of the runs' seed summaries, final summaries and targeted
weaknesses, or `--categories FILE` for a neutral taxonomy), round by round, with the same incremental metrics as the cards
(`hfadvisor.metrics.state`). Safety evaluations (`hfadvisor evaluate` outputs) found in
`RUN/evaluations/*/` or given as LABEL=DIR add a safe-rate-per-category plot.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hfadvisor.deps import require
from hfadvisor.errors import ConfigError
from hfadvisor.metrics.run import measure, shared_categories
from hfadvisor.rundir import paths
from hfadvisor.rundir.files import atomic_write
from hfadvisor.rundir.store import RunStore

WIDTH, HEIGHT, DPI = 1000, 600, 100  # every plot is 1000×600 px
TOP_CATEGORIES = 25
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class CompareReport:
    """What `compare` measured (`compare.json` is its `to_dict()`)."""

    categories: list[str]  # the shared category list every run was measured against
    categories_from: str  # where that list came from, in words
    embedding_model: str
    runs: dict[str, dict[str, Any]]  # label → final figures, identity, own card metrics
    series: dict[str, list[dict[str, Any]]]  # label → figures after every round
    evaluations: dict[str, dict[str, Any]]  # label → an `hfadvisor evaluate` summary.json
    plots: list[str]  # PNG file names written next to report.md

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(stores: list[RunStore], given: list[str] | None) -> list[str]:
    if given:
        if len(given) != len(stores):
            raise ConfigError(f"--label given {len(given)} times for {len(stores)} runs: give one per run, in order")
        return list(given)
    labels = [f"{s.info.mode} ({s.path.name})" for s in stores]
    return [f"{label} #{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _evaluations(stores: list[RunStore], labels: list[str], extra: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, Path] = {}
    for store, label in zip(stores, labels, strict=True):
        for summary in sorted(store.path.glob(paths.EVALUATION_SUMMARIES_GLOB)):
            found[f"{label}: {summary.parent.name}"] = summary.parent
    for spec in extra:
        label, sep, directory = spec.partition("=")
        if not sep or not label or not directory:
            raise ConfigError(f"--evaluation {spec!r}: use LABEL=DIR (an `hfadvisor evaluate` output directory)")
        found[label] = Path(directory)
    out = {}
    for label, directory in found.items():
        path = directory / "summary.json"
        try:
            out[label] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(
                f"{path} is missing or unreadable: is {directory} an `hfadvisor evaluate` output?"
            ) from None
    # utility evaluations (MMLU accuracy) have no safe rate: `hfadvisor report` shows them
    return {label: ev for label, ev in out.items() if ev.get("kind", "safety") == "safety"}


def _figure(rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # no bbox_inches="tight": keeps the exact pixel size
    return buf.getvalue()


def _short(text: str, n: int = 42) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def plot_coverage(series: dict[str, list[dict[str, Any]]], total: int) -> bytes:
    fig, axes = _figure()
    ax = axes[0][0]
    for i, (label, points) in enumerate(series.items()):
        rounds, color = [p["round"] for p in points], COLORS[i % len(COLORS)]
        ax.plot(
            rounds,
            [p["categories_covered"] for p in points],
            marker="o",
            markersize=3,
            color=color,
            label=f"{label}: covered (≥ 1 row)",
            linewidth=2,
        )
        ax.plot(rounds, [p["effective_categories"] for p in points], linestyle="--", color=color,
                label=f"{label}: effective number (exp entropy)", linewidth=2)  # fmt: skip
    ax.set_title(f"Categories covered (of {total} shared categories) vs rounds")
    ax.set_xlabel("round")
    ax.set_ylabel("categories")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def plot_diversity(series: dict[str, list[dict[str, Any]]]) -> bytes:
    fig, axes = _figure(2, 2)
    panels = [
        ("vendi", "Vendi score (embedding diversity, higher = more diverse)"),
        ("mean_cosine_distance", "Mean pairwise cosine distance"),
        ("distinct_2", "distinct-2 (unique word bigrams / all)"),
        ("near_duplicate_rate", "Near-duplicate rate (lower is better)"),
    ]
    for ax, (key, title) in zip([a for row in axes for a in row], panels, strict=True):
        for i, (label, points) in enumerate(series.items()):
            ax.plot([p["rows"] for p in points], [p[key] for p in points], color=COLORS[i % len(COLORS)],
                    label=label, linewidth=2)  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("rows", fontsize=9)
        if key == "near_duplicate_rate":
            ax.set_ylim(0, max(0.05, *(p[key] for pts in series.values() for p in pts)) * 1.1)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=9)
    return _png(fig)


def plot_categories(final: dict[str, dict[str, int]]) -> bytes:
    import numpy as np

    totals: dict[str, int] = {}
    for counts in final.values():
        for cat, n in counts.items():
            totals[cat] = totals.get(cat, 0) + n
    cats = sorted(totals, key=lambda c: -totals[c])[:TOP_CATEGORIES][::-1]
    fig, axes = _figure()
    ax = axes[0][0]
    y = np.arange(len(cats))
    height = 0.8 / max(len(final), 1)
    for i, (label, counts) in enumerate(final.items()):
        ax.barh(y + i * height - 0.4 + height / 2, [counts.get(c, 0) for c in cats], height=height,
                color=COLORS[i % len(COLORS)], label=label)  # fmt: skip
    ax.set_yticks(y, [_short(c) for c in cats], fontsize=7)
    ax.set_xlabel("rows assigned (closest category by MiniLM embedding)")
    shown = f"the {len(cats)} largest of {len(totals)}" if len(totals) > len(cats) else f"all {len(cats)}"
    ax.set_title(f"Rows per category ({shown} shared categories)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    return _png(fig)


def plot_safety(evals: dict[str, dict[str, Any]]) -> bytes:
    import numpy as np

    cats = sorted({c for e in evals.values() for c in e["per_category"]})
    names = ["overall", *cats]
    fig, axes = _figure()
    ax = axes[0][0]
    x = np.arange(len(names))
    width = 0.8 / max(len(evals), 1)
    for i, (label, ev) in enumerate(evals.items()):
        values = [ev["safe_rate"]] + [(ev["per_category"].get(c) or {}).get("safe_rate") for c in cats]
        ax.bar(x + i * width - 0.4 + width / 2, [100 * (v or 0) for v in values], width=width,
               color=COLORS[i % len(COLORS)], label=label)  # fmt: skip
    ax.set_xticks(x, [_short(n, 24) for n in names], rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("safe responses (%)")
    ax.set_title("Safe rate per category (judge verdicts; higher is safer)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    return _png(fig)


def compare(
    runs: list[Path],
    output: str | Path,
    *,
    labels: list[str] | None = None,
    categories_file: Path | None = None,
    evaluations: list[str] | None = None,
    upto: int | None = None,
) -> CompareReport:
    """Measure every run against a shared category list, write `report.md`, PNG plots and `compare.json`.

    Args:
        runs: run directories (read-only).
        output: the report's directory (created).
        labels: one name per run (default: mode and folder name).
        categories_file: a neutral category list, one per line (default: the runs' own, merged).
        evaluations: extra `LABEL=DIR` safety evaluations (RUN/evaluations/* are found by themselves).
        upto: compare rounds 0..upto of every run (equal budgets when the runs have different lengths).

    Returns:
        The figures of every run, round by round.

    Raises:
        ConfigError: bad labels, categories file or evaluation directories.
        MissingDependencyError: the `metrics` extra is not installed.
        RunStateError: a directory is not a readable run.
    """
    if not runs:
        raise ConfigError("give at least one run directory (two or more to compare)")
    require("metrics", "matplotlib", feature="compare")
    from hfadvisor.metrics.embed import shared_embedder

    stores = [RunStore.open(path, repair=False) for path in runs]
    names = _labels(stores, labels)
    evals = _evaluations(stores, names, evaluations or [])
    categories, taxonomy = shared_categories(stores, categories_file)
    embedder = shared_embedder()
    if upto is not None and upto < 0:
        raise ConfigError("--rounds must be ≥ 0")
    series = {label: measure(store, embedder, categories, upto) for label, store in zip(names, stores, strict=True)}

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "coverage.png": plot_coverage(series, len(categories)),
        "diversity.png": plot_diversity(series),
        "categories.png": plot_categories({k: v[-1]["rows_per_category"] for k, v in series.items()}),
    }
    if evals:
        plots["safety.png"] = plot_safety(evals)
    for name, data in plots.items():
        atomic_write(out / name, data)

    runs_info = {}
    for label, store in zip(names, stores, strict=True):
        final = series[label][-1]
        last = store.last
        runs_info[label] = {
            "path": str(store.path),
            "mode": store.info.mode,
            "run_id": store.info.run_id,
            "config_hash": store.info.config_hash,
            "rounds": series[label][-1]["round"],
            "model": last.model if last else None,
            **{k: v for k, v in final.items() if k not in ("round", "rows_per_category")},
            "rows_per_category": final["rows_per_category"],
            "own_card_metrics": {k: v for k, v in (last.extra.get("metrics") or {}).items() if k != "rows_per_category"}
            if last
            else {},
        }
    report = CompareReport(categories, taxonomy, embedder.name, runs_info, series, evals, list(plots))
    atomic_write(out / "compare.json", (json.dumps(report.to_dict(), indent=1, ensure_ascii=False) + "\n").encode())
    atomic_write(out / "report.md", report_markdown(report).encode())
    return report


def report_markdown(report: CompareReport) -> str:
    from hfadvisor.card import md

    runs = report.runs
    labels = list(runs)
    lines = [
        "# Run comparison",
        "",
        f"Every run is measured against the same {len(report.categories)} categories: "
        f"{md(report.categories_from)}. A row counts for the category whose {md(report.embedding_model)} "
        "embedding is closest to its prompt's.",
        "",
        "| | " + " | ".join(md(label) for label in labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    rows = [
        ("mode", lambda r: r["mode"]),
        ("rounds", lambda r: str(r["rounds"])),
        ("rows", lambda r: str(r["rows"])),
        ("generator model", lambda r: md(r["model"])),
        ("categories covered", lambda r: f"{r['categories_covered']} of {r['categories_total']}"),
        ("effective number of categories", lambda r: f"{r['effective_categories']:.1f}"),
        ("Vendi score", lambda r: f"{r['vendi']:.2f}"),
        ("mean pairwise cosine distance", lambda r: f"{r['mean_cosine_distance']:.3f}"),
        ("distinct-1 / distinct-2", lambda r: f"{r['distinct_1']:.3f} / {r['distinct_2']:.3f}"),
        ("near-duplicate rate", lambda r: f"{r['near_duplicate_rate']:.3f}"),
    ]
    for name, fn in rows:
        lines.append(f"| {name} | " + " | ".join(fn(runs[label]) for label in labels) + " |")
    lines += [
        "",
        "![categories covered vs rounds](coverage.png)",
        "",
        "![diversity vs rows](diversity.png)",
        "",
        "![rows per category](categories.png)",
        "",
        "## Rows per category",
        "",
        "| category | " + " | ".join(md(label) for label in labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for cat in report.categories:
        counts = [runs[label]["rows_per_category"].get(cat, 0) for label in labels]
        lines.append(f"| {md(cat)} | " + " | ".join(str(c) for c in counts) + " |")
    if report.evaluations:
        lines += ["", "## Safety", "", "![safe rate per category](safety.png)", ""]
        lines += ["| evaluation | target | judge | prompts | safe rate |", "|---|---|---|---|---|"]
        for label, ev in report.evaluations.items():
            rate = "—" if ev.get("safe_rate") is None else f"{100 * ev['safe_rate']:.1f}%"
            lines.append(
                f"| {md(label)} | {md(ev.get('target_model'))} | {md(ev.get('judge_model'))} | "
                f"{ev.get('prompts')} | {rate} |"
            )
    lines += [
        "",
        "Notes: all figures are cumulative over rounds 0..N (round 0 = the seeds). The cards of each run "
        "report the same metrics against the run's own summary instead (`own_card_metrics` in compare.json).",
        "",
    ]
    return "\n".join(lines)
