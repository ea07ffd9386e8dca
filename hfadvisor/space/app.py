"""The Gradio app: assembles the tabs (`hfadvisor.space.tabs`) and the API endpoints.

Used by `spaces/app.py` (a deployable Hugging Face Space) and by `hfadvisor space`. What is
shown is computed by `hfadvisor.space.data`; each tab module lays out its part and has its
handlers; this module only puts the page together and wires the events that cross tabs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from hfadvisor.space.guard import forget_server_token, friendly
from hfadvisor.space.state import SpaceOptions, close_session

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["CSS", "SpaceOptions", "build_app", "forget_server_token", "launch_kwargs"]

CSS = """
.summary-diff { font-family: ui-monospace, monospace; font-size: 0.9em; line-height: 1.5; }
.summary-diff .head { font-family: inherit; font-weight: 600; margin-bottom: 0.3em; }
.summary-diff .added { background: #dcfce7; color: #14532d; }
.summary-diff .removed { background: #fee2e2; color: #7f1d1d; text-decoration: line-through; }
.summary-diff .op { display: inline-block; width: 1.2em; color: #6b7280; }
.summary-diff .note { color: #6b7280; font-style: italic; }
#live-status progress { width: 100%; height: 0.9em; }
"""

INTRO = (
    "Every round of a [Data Advisor](https://arxiv.org/abs/2410.05269) run is a dataset revision: "
    "the weakness it targeted, what the summary learned, the rows it wrote and what it rejected. "
    "**Content warning:** the rows are harmful requests, made to train models to refuse them."
)


def build_app(options: SpaceOptions | None = None) -> gr.Blocks:
    """The whole Space as a `gr.Blocks`; launch it with `launch_kwargs()`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from hfadvisor.space import api
    from hfadvisor.space.tabs import compare, explore, start

    opts = options or SpaceOptions()

    def timeline(source: str, revision: str = "", token: str = "") -> list[dict[str, Any]]:
        """The round timeline of a run: weakness, rows, rejects, summary update per round."""
        return api.api_timeline(opts, source, revision, token)

    def round(source: str, round: int, revision: str = "", token: str = "") -> dict[str, Any]:
        """One round of a run: its weakness, summary before/after, rows and rejects."""
        return api.api_round(opts, source, round, revision, token)

    with gr.Blocks(title="hfadvisor", analytics_enabled=False) as demo:
        state = gr.State(None, delete_callback=close_session)
        gr.Markdown(f"# {opts.title}")
        gr.Markdown(INTRO)
        with gr.Accordion("Hugging Face token (optional)", open=False):
            token = gr.Textbox(
                label="Token",
                type="password",
                placeholder="hf_…",
                elem_id="token",
                info="Used for this session only (private repos, protected endpoints, pushing); "
                "never shown, logged or stored. Without one, public repos and local runs work.",
            )
        with gr.Tabs() as tabs:
            with gr.Tab("Explore a run", id="explore"):
                explore_tab = explore.layout(opts)
            with gr.Tab("Compare runs", id="compare"):
                compare_tab = compare.layout(opts)
            with gr.Tab("Start a run", id="start"):
                start_tab = start.layout(opts)

        explore.wire(explore_tab, opts, token, state)
        compare.wire(compare_tab, opts, token, state)
        start.wire(start_tab, opts, token, state)
        # across tabs: a finished run of this session opens in Explore
        start_tab.explore_btn.click(
            friendly(explore.show_own_run),
            [*explore_tab.filters, state],
            [
                tabs,
                explore_tab.source,
                explore_tab.header,
                explore_tab.timeline,
                explore_tab.slider,
                *explore_tab.round_outputs,
            ],
            api_visibility="private",
        )
        gr.api(friendly(timeline), api_name="timeline")
        gr.api(friendly(round), api_name="round")

        if opts.sources:  # chained, not parallel: both events fill the same session state
            open_inputs, open_outputs = explore.open_io(explore_tab, token, state)
            loaded = demo.load(friendly(explore.open_run, opts), open_inputs, open_outputs, api_visibility="private")
            if len(opts.sources) > 1:
                compare_inputs, compare_outputs = compare.compare_io(compare_tab, token, state)
                loaded.then(friendly(compare.compare, opts), compare_inputs, compare_outputs, api_visibility="private")
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Launch settings every deployment shares: no browser-side run history (it would store the
    token box), no error details beyond the readable messages, our CSS."""
    return {"css": CSS, "run_history": False, "show_error": False, "footer_links": ["api"]}
