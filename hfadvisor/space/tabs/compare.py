"""The "Compare runs" tab: two runs (e.g. advisor and its Self-Instruct baseline) measured against
one shared category list (`hfadvisor.metrics.run`) when the metrics extra is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from hfadvisor.space import data, plots
from hfadvisor.space.data import SpaceError
from hfadvisor.space.guard import friendly
from hfadvisor.space.state import Session, SpaceOptions, open_view, session_of


def compare(
    opts: SpaceOptions,
    source_a: str,
    rev_a: str,
    source_b: str,
    rev_b: str,
    token: str,
    state: Session | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's way of asking for a progress bar
) -> list[Any]:
    """Open both runs and measure them: [state, table, coverage plot, categories plot]."""
    session = session_of(state)
    progress(0.1, desc="opening run A")
    a = open_view(opts, session, source_a, rev_a, token)
    if not (source_b or "").strip():
        raise SpaceError("give a second run to compare with (e.g. the Self-Instruct baseline)")
    progress(0.5, desc="opening run B")
    b = open_view(opts, session, source_b, rev_b, token)
    session.views["a"], session.views["b"] = a, b
    views = [a, b]
    progress(0.7, desc="measuring both runs against one shared category list")
    shared = data.shared_measure(views)
    return [
        session,
        data.compare_table(views, shared),
        plots.compare_coverage(views, shared),
        plots.compare_categories(views, shared),
    ]


@dataclass
class CompareTab:
    inputs: list[Any]  # source A, revision A, source B, revision B
    button: gr.Button
    outputs: list[Any]  # table, coverage plot, categories plot


def layout(opts: SpaceOptions) -> CompareTab:
    """The tab's components, created inside the current `gr.Tab`."""
    initial = opts.sources[0] if opts.sources else ""
    initial_b = opts.sources[1] if len(opts.sources) > 1 else ""
    gr.Markdown("Two runs on the same budget, e.g. `hfadvisor run` (advisor) and `hfadvisor baseline`.")
    with gr.Row():
        source_a = gr.Textbox(label="Run A (advisor)", value=initial, elem_id="source-a", scale=3)
        rev_a = gr.Textbox(label="revision A", elem_id="rev-a", scale=1)
        source_b = gr.Textbox(label="Run B (baseline)", value=initial_b, elem_id="source-b", scale=3)
        rev_b = gr.Textbox(label="revision B", elem_id="rev-b", scale=1)
    button = gr.Button("Compare", variant="primary", elem_id="compare")
    table = gr.Dataframe(label="At a glance", interactive=False, elem_id="compare-table")
    cov = gr.Plot(label="Coverage and diversity", elem_id="compare-coverage")
    cat = gr.Plot(label="Rows per category", elem_id="compare-categories")
    return CompareTab(inputs=[source_a, rev_a, source_b, rev_b], button=button, outputs=[table, cov, cat])


def compare_io(tab: CompareTab, token: Any, state: Any) -> tuple[list[Any], list[Any]]:
    """Inputs and outputs of `compare` (also chained after the page-load open)."""
    return [*tab.inputs, token, state], [state, *tab.outputs]


def wire(tab: CompareTab, opts: SpaceOptions, token: Any, state: Any) -> None:
    inputs, outputs = compare_io(tab, token, state)
    tab.button.click(friendly(compare, opts), inputs, outputs, api_name="compare")
