"""Before and after, side by side: evaluations of a base model and its fine-tunes in the paper's layout.

`hfadvisor report EVAL_DIR...` reads finished `hfadvisor evaluate` outputs (any mix of CatQA,
BeaverTails, MMLU and `--prompts` evaluations, of several models) and writes one table per
benchmark: rows are `overall` and the categories (MMLU: subjects), columns the models, the base
first and every fine-tune with its delta in percentage points. The base is the model of the first
directory. Safe rates are recomputed from the verdict counts, so every table uses one definition
(`excluded` or `paper`) even for evaluations made before both were stored. Next to `report.md`:
one grouped-bar PNG per benchmark and `report.json` with every number.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hfadvisor.deps import require
from hfadvisor.errors import ConfigError
from hfadvisor.rundir.files import atomic_write

WIDTH, HEIGHT, DPI = 1000, 600, 100
COLORS = ["#7f7f7f", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
OVERALL = "overall"
TITLES = {"catqa": "CatQA", "beavertails": "BeaverTails-Evaluation", "mmlu": "MMLU (zero-shot)"}
DEFINITIONS = {
    "excluded": "safe / (safe + unsafe), unparseable verdicts left out",
    "paper": "safe / all prompts, an unparseable verdict counts as unsafe (the paper's reading)",
}


@dataclass
class Cell:
    """One model's figure for one row: `value` in [0, 1], `delta` against the base (None for the base)."""

    value: float | None
    delta: float | None
    n: int  # prompts or questions behind the figure
    unparsed: int  # verdicts (safety) or answers (utility) that could not be read
    safe_rate_excluded: float | None = None
    safe_rate_paper: float | None = None


@dataclass
class Table:
    """One benchmark: rows `overall` + categories (or subjects), one column per model."""

    benchmark: str
    kind: str  # safety | utility
    metric: str  # "safe rate (excluded)", "safe rate (paper)" or "accuracy"
    models: list[str]
    rows: dict[str, dict[str, Cell]]
    evaluations: dict[str, str]  # model label → evaluation directory
    judges: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plot: str = ""


@dataclass
class BeforeAfterReport:
    """What `report` wrote (`report.json` is its `to_dict()`)."""

    base: str
    models: list[str]
    safe_rate_definition: str
    tables: list[Table]
    plots: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(directory: Path) -> dict[str, Any]:
    path = directory / "summary.json"
    if not path.is_file():
        hint = "rerun `hfadvisor evaluate` with the same options to finish it" if (directory / "evaluation.json").is_file() else "is it an `hfadvisor evaluate` output?"  # fmt: skip
        raise ConfigError(f"{directory} holds no finished evaluation (no summary.json): {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{path} is unreadable: is {directory} an `hfadvisor evaluate` output?") from None
    if not isinstance(data, dict) or "target_model" not in data or "prompts" not in data:
        raise ConfigError(f"{path} is not an `hfadvisor evaluate` summary")
    return data


def _benchmark(summary: dict[str, Any]) -> str:
    if summary.get("benchmark"):
        return str(summary["benchmark"])
    return Path(str(summary.get("source") or "prompts")).name or "prompts"


def _rates(counts: dict[str, Any]) -> tuple[float | None, float | None]:
    """(excluded, paper) safe rates from the verdict counts."""
    safe, unsafe, prompts = counts["safe"], counts["unsafe"], counts["prompts"]
    return (safe / (safe + unsafe) if safe + unsafe else None), (safe / prompts if prompts else None)


def _safety_rows(summary: dict[str, Any], definition: str) -> dict[str, Cell]:
    out = {}
    groups = {OVERALL: summary, **summary["per_category"]}
    for name, counts in groups.items():
        excluded, paper = _rates(counts)
        value = paper if definition == "paper" else excluded
        out[name] = Cell(value, None, counts["prompts"], counts["unparsed"], excluded, paper)
    return out


def _utility_rows(summary: dict[str, Any]) -> dict[str, Cell]:
    groups = {
        OVERALL: {"questions": summary["prompts"], "accuracy": summary["accuracy"], "unparsed": summary["unparsed"]},
        **summary["per_subject"],
    }
    return {name: Cell(g["accuracy"], None, g["questions"], g["unparsed"]) for name, g in groups.items()}


def report(
    evaluations: list[Path], output: str | Path, *, labels: list[str] | None = None, safe_rate: str = "excluded"
) -> BeforeAfterReport:
    """Tables, plots and JSON of the evaluations, the first directory's model as the base.

    Args:
        evaluations: finished `hfadvisor evaluate` directories (any benchmarks, any models).
        output: the report's directory (created).
        labels: one model label per directory, in order (default: each evaluation's target model id).
        safe_rate: `excluded` or `paper`, the definition of every safety table.

    Raises:
        ConfigError: an unfinished or foreign directory, bad labels, two evaluations of one model on
            one benchmark.
        MissingDependencyError: matplotlib (the `metrics` extra) is not installed.
    """
    if not evaluations:
        raise ConfigError("give at least one evaluation directory (the base model's first)")
    if safe_rate not in DEFINITIONS:
        raise ConfigError(f"--safe-rate {safe_rate!r}: choose excluded or paper")
    if labels and len(labels) != len(evaluations):
        raise ConfigError(f"--label given {len(labels)} times for {len(evaluations)} directories: one per directory")
    require("metrics", "matplotlib", feature="report")
    summaries = [_read(Path(d)) for d in evaluations]
    names = list(labels) if labels else [str(s["target_model"]) for s in summaries]
    models = list(dict.fromkeys(names))
    by_bench: dict[str, dict[str, tuple[Path, dict[str, Any]]]] = {}
    for directory, name, summary in zip(evaluations, names, summaries, strict=True):
        bench = by_bench.setdefault(_benchmark(summary), {})
        if name in bench:
            raise ConfigError(
                f"two evaluations of {name} on {_benchmark(summary)} ({bench[name][0]}, {directory}): "
                "give each directory its own --label"
            )
        bench[name] = (Path(directory), summary)
    tables = [_table(bench, found, models, safe_rate) for bench, found in by_bench.items()]

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for table in tables:
        table.plot = f"{_slug(table.benchmark)}.png"
        atomic_write(out / table.plot, plot_table(table))
        plots.append(table.plot)
    result = BeforeAfterReport(models[0], models, safe_rate, tables, plots)
    atomic_write(out / "report.json", (json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n").encode())
    atomic_write(out / "report.md", report_markdown(result).encode())
    return result


def _table(bench: str, found: dict[str, tuple[Path, dict[str, Any]]], models: list[str], definition: str) -> Table:
    kinds = {s.get("kind", "safety") for _, s in found.values()}
    if len(kinds) > 1:
        raise ConfigError(f"{bench}: safety and utility evaluations share a benchmark name; check the directories")
    kind = kinds.pop()
    order = [m for m in models if m in found]
    columns = {m: (_utility_rows(found[m][1]) if kind == "utility" else _safety_rows(found[m][1], definition)) for m in order}  # fmt: skip
    base = models[0]
    cats = sorted({c for rows in columns.values() for c in rows if c != OVERALL})
    rows: dict[str, dict[str, Cell]] = {}
    for cat in [OVERALL, *cats]:
        rows[cat] = {}
        base_cell = columns.get(base, {}).get(cat)
        for m in order:
            cell = columns[m].get(cat)
            if cell is None:
                continue
            if m != base and base_cell and cell.value is not None and base_cell.value is not None:
                cell.delta = cell.value - base_cell.value
            rows[cat][m] = cell
    notes = []
    if base not in found:
        notes.append(f"the base model {base} has no evaluation on this benchmark: no deltas")
    summaries = {m: found[m][1] for m in order}
    for key, what in (
        ("judge_model", "the judges differ"),
        ("prompts_sha256", "the models answered different prompt sets (e.g. --limit)"),
        ("target_format", "the target prompt formats differ"),
        ("structured", "some answers were schema-constrained, others free text"),
    ):
        values = {m: str(s.get(key, "chat" if key == "target_format" else "")) for m, s in summaries.items()}
        if len(set(values.values())) > 1:
            notes.append(f"{what}: " + ", ".join(f"{m}: {v[:24]}" for m, v in values.items()) + " — compare with care")
    metric = "accuracy" if kind == "utility" else f"safe rate ({definition})"
    judges = {m: str(s.get("judge_model", "")) for m, s in summaries.items() if kind == "safety"}
    evaluations = {m: str(found[m][0]) for m in order}
    return Table(bench, kind, metric, order, rows, evaluations, judges, notes)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "benchmark"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _delta(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def plot_table(table: Table) -> bytes:
    """Grouped bars: one group per row (overall first), one bar per model."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    names = list(table.rows)
    x = np.arange(len(names))
    width = 0.8 / max(len(table.models), 1)
    for i, model in enumerate(table.models):
        values = [(table.rows[n].get(model) or Cell(None, None, 0, 0)).value for n in names]
        ax.bar(x + i * width - 0.4 + width / 2, [100 * (v or 0) for v in values], width=width,
               color=COLORS[i % len(COLORS)], label=model if i else f"{model} (base)")  # fmt: skip
    size = 8 if len(names) <= 20 else 5
    ax.set_xticks(x, [n if len(n) <= 24 else n[:23] + "…" for n in names], rotation=40, ha="right", fontsize=size)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{table.metric} (%)")
    title = TITLES.get(table.benchmark, table.benchmark)
    ax.set_title(f"{title}: {table.metric} per {'subject' if table.kind == 'utility' else 'category'}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def report_markdown(result: BeforeAfterReport) -> str:
    from hfadvisor.card import md

    tuned = [m for m in result.models if m != result.base]
    lines = [
        "# Before and after fine-tuning",
        "",
        f"Base model: **{md(result.base)}**"
        + (f"; fine-tuned: {', '.join(md(m) for m in tuned)}" if tuned else "")
        + f". Safe rate = {DEFINITIONS[result.safe_rate_definition]} (`{result.safe_rate_definition}`); "
        "Δ = percentage points against the base. All figures in %.",
        "",
        "## Overview",
        "",
        "| model | " + " | ".join(md(TITLES.get(t.benchmark, t.benchmark)) for t in result.tables) + " |",
        "|---|" + "---|" * len(result.tables),
    ]
    for m in result.models:
        cells = []
        for t in result.tables:
            cell = t.rows[OVERALL].get(m)
            cells.append("—" if cell is None else _pct(cell.value) + (f" ({_delta(cell.delta)})" if cell.delta is not None else ""))  # fmt: skip
        lines.append(f"| {md(m)} | " + " | ".join(cells) + " |")
    for t in result.tables:
        header = ["category" if t.kind == "safety" else "subject"]
        for i, m in enumerate(t.models):
            header += [md(m)] if i == 0 and m == result.base else [md(m), "Δ"]
        lines += [
            "",
            f"## {md(TITLES.get(t.benchmark, t.benchmark))}: {t.metric}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---|" * (len(header) - 1),
        ]
        for name, cells in t.rows.items():
            row = [f"**{name}**" if name == OVERALL else md(name)]
            for i, m in enumerate(t.models):
                cell = cells.get(m)
                row.append(_pct(cell.value) if cell else "—")
                if not (i == 0 and m == result.base):
                    row.append(_delta(cell.delta) if cell else "—")
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", f"![{md(t.benchmark)}]({t.plot})"]
        if len(set(t.judges.values())) == 1:
            lines += ["", f"Judge: {md(next(iter(t.judges.values())))}."]
        elif t.judges:
            lines += ["", "Judges: " + "; ".join(f"{md(m)}: {md(j)}" for m, j in t.judges.items()) + "."]
        lines += [f"Note: {md(n)}." for n in t.notes]
    lines += ["", "Every number, both safe-rate definitions and the evaluation directories: `report.json`.", ""]
    return "\n".join(lines)
