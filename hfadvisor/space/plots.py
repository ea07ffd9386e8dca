"""Plotly figures of a run's coverage: built from `data`'s tables, so they show exactly what the tables say.

Plotly because Gradio renders its figures natively in the browser (zoom, hover) with no image
round-trip; category names are model text, which plotly renders as text, not markup.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hfadvisor.space.data import RunView, SharedMeasure, coverage, coverage_basis, rows_per_category

COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea"]
LAYOUT = {"template": "plotly_white", "margin": {"l": 50, "r": 20, "t": 60, "b": 40}, "height": 380}


def _esc(text: str) -> str:
    """Plotly interprets a few HTML tags in labels; model text must stay text."""
    return html.escape(text, quote=False)


def categories_over_rounds(view: RunView, selected: int | None = None) -> go.Figure:
    """Categories covered and rows, round by round, with the selected round marked."""
    cov = coverage(view)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("categories covered", "rows (total)"))
    fig.add_trace(
        go.Scatter(x=cov["round"], y=cov["categories covered"], mode="lines+markers", name="categories covered"),
        row=1,
        col=1,
    )
    if cov["summary lines"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=cov["round"], y=cov["summary lines"], mode="lines", name="summary lines", line={"dash": "dot"}
            ),
            row=1,
            col=1,
        )
    fig.add_trace(go.Bar(x=cov["round"], y=cov["rows"], name="rows", marker_color=COLORS[2]), row=1, col=2)
    if selected is not None:
        for col in (1, 2):
            fig.add_vline(x=selected, line_dash="dash", line_color="#888", row=1, col=col)  # type: ignore[arg-type]
    fig.update_xaxes(title_text="round", dtick=1 if view.last_round <= 20 else None)
    fig.update_layout(title=_esc(f"Coverage over rounds ({coverage_basis(view)})"), **LAYOUT)
    return fig


def category_bars(view: RunView, upto: int) -> go.Figure:
    """Rows per category in rounds 0..upto."""
    per = rows_per_category(view, upto)
    fig = go.Figure(
        go.Bar(x=per["rows"], y=[_esc(c) for c in per["category"]], orientation="h", marker_color=COLORS[0])
    )
    fig.update_yaxes(autorange="reversed")
    layout = {**LAYOUT, "height": max(300, 60 + 22 * len(per))}
    fig.update_layout(title=f"Rows per category, rounds 0–{upto}", **layout)
    return fig


def compare_coverage(views: list[RunView], shared: SharedMeasure | None = None) -> go.Figure:
    """Runs side by side over rounds: categories covered (against the shared list when measured) and distinct-2."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("categories covered", "distinct-2 (diversity)"))
    for i, view in enumerate(views):
        if shared is not None:
            s = shared.series[i]
            x, covered, distinct = s["round"], s["categories_covered"], s["distinct_2"]
        else:
            cov = coverage(view)
            x, covered, distinct = cov["round"], cov["categories covered"], cov["distinct-2"]
        name = _esc(f"{view.info.mode}: {view.label}")
        color = COLORS[i % len(COLORS)]
        style = {"mode": "lines+markers", "line": {"color": color}, "legendgroup": str(i)}
        fig.add_trace(go.Scatter(x=x, y=covered, name=name, **style), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=distinct, name=name, showlegend=False, **style), row=1, col=2)
    fig.update_xaxes(title_text="round")
    basis = shared.basis if shared is not None else "each run's own summary (no shared measure)"
    fig.update_layout(title=_esc(f"Coverage and diversity over rounds — categories: {basis}"), **LAYOUT)
    return fig


def compare_categories(views: list[RunView], shared: SharedMeasure | None = None) -> go.Figure:
    """Rows per category of each run (its last round), one panel per run."""
    titles = [_esc(f"{v.info.mode}: {v.label}") for v in views]
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=titles, horizontal_spacing=0.25)
    longest = 0
    for i, view in enumerate(views):
        if shared is not None:
            counts = sorted(shared.rows_per_category[i].items(), key=lambda kv: -kv[1])
            cats, rows = [c for c, _ in counts], [n for _, n in counts]
        else:
            per = rows_per_category(view)
            cats, rows = list(per["category"]), list(per["rows"])
        longest = max(longest, len(cats))
        fig.add_trace(
            go.Bar(
                x=rows,
                y=[_esc(c) for c in cats],
                orientation="h",
                marker_color=COLORS[i % len(COLORS)],
                showlegend=False,
            ),
            row=1,
            col=i + 1,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    layout = {**LAYOUT, "height": max(320, 80 + 22 * longest)}
    fig.update_layout(title="Rows per category", **layout)
    return fig
