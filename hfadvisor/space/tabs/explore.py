"""The "Explore a run" tab: a run's timeline, then one round at a time (weakness, summary diff,
samples, rejects, human labels, coverage plots)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from hfadvisor.space import data, plots
from hfadvisor.space.data import RunView
from hfadvisor.space.guard import friendly
from hfadvisor.space.state import Session, SpaceOptions, open_view, session_of, view_of


def run_header(view: RunView) -> str:
    """One paragraph about the run: what, where from, how big (model text escaped)."""
    from hfadvisor.card import md

    info = view.info
    last = view.revisions[-1]
    rows = sum(r.rows for r in view.revisions)
    rejects = sum(r.rejects for r in view.revisions)
    preset = info.preset.get("name", "custom") if isinstance(info.preset, dict) else "custom"
    parts = [
        f"**{md(info.mode)} run** `{info.run_id[:8]}` · preset {md(str(preset))} · model {md(last.model)}",
        f"rounds 0–{view.last_round} of {last.rounds_planned or view.last_round} planned · {rows} rows · "
        f"{rejects} rejected · config `{info.config_hash}`",
    ]
    if view.hub:
        commit = f" (commit `{view.hub.commit[:8]}`)" if view.hub.commit else ""
        tags = ", ".join(view.hub.tags[-8:]) if view.hub.tags else "none"
        more = f" (and {len(view.hub.tags) - 8} more)" if len(view.hub.tags) > 8 else ""
        parts.append(f"Hub: {md(view.hub.repo_id)} at {md(view.hub.revision)}{commit} · tags: {md(tags)}{more}")
    if view.labels is not None:
        parts.append(f"Human labels: {len(view.labels)} (from `labels/`)")
    return "  \n".join(parts)


def round_outputs(view: RunView, r: int, query: str, source: str, cumulative: bool) -> list[Any]:
    """Everything the tab shows for round r, in the order of `ExploreTab.round_outputs`."""
    rev = view.revision(r)
    labels = data.labels_for_round(view, r)
    return [
        data.weakness_text(rev),
        data.round_markdown(view, r),
        data.summary_diff_html(rev),
        data.samples(view, r, query=query or "", source=source or "all", cumulative=bool(cumulative)),
        data.rejects_of(view, r),
        gr.update(value=labels, visible=labels is not None),
        plots.categories_over_rounds(view, r),
        plots.category_bars(view, r),
    ]


def slider_at(view: RunView, r: int) -> Any:
    return gr.update(minimum=0, maximum=max(view.last_round, 1), value=r, interactive=view.last_round > 0)


# ---------------------------------------------------------------------------------------------- handlers
def open_run(
    opts: SpaceOptions,
    source: str,
    revision: str,
    token: str,
    query: str,
    source_filter: str,
    cumulative: bool,
    state: Session | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's way of asking for a progress bar
) -> list[Any]:
    """Open a run and show its last round: [state, header, timeline, slider, revision, *round]."""
    session = session_of(state)
    progress(0.1, desc="opening the run (a Hub repo is downloaded first)")
    view = open_view(opts, session, source, revision, token)
    session.views["main"] = view
    r = view.last_round
    tags = view.hub.tags if view.hub else []
    return [
        session,
        run_header(view),
        data.timeline(view),
        slider_at(view, r),
        gr.update(choices=["", *tags], value=revision or ""),
        *round_outputs(view, r, query, source_filter, cumulative),
    ]


def show_round(r: float, query: str, source_filter: str, cumulative: bool, state: Session | None) -> list[Any]:
    view = view_of(state)
    return round_outputs(view, min(int(r), view.last_round), query, source_filter, cumulative)


def filter_samples(r: float, query: str, source_filter: str, cumulative: bool, state: Session | None) -> Any:
    view = view_of(state)
    return data.samples(
        view, min(int(r), view.last_round), query=query or "", source=source_filter, cumulative=cumulative
    )


def step(delta: int, r: float, state: Session | None) -> Any:
    """The slider moved by `delta` rounds, kept within the run."""
    view = view_of(state)
    return gr.update(value=max(0, min(view.last_round, int(r) + delta)))


def pick_from_timeline(state: Session | None, evt: gr.SelectData) -> Any:
    """A click on a timeline row moves the slider to that round."""
    if not isinstance(state, Session) or "main" not in state.views or evt.index is None:
        return gr.update()
    row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
    return gr.update(value=min(int(row), state.views["main"].last_round))


pick_from_timeline.__annotations__["evt"] = gr.SelectData  # the class, not a string: Gradio injects by type


def show_own_run(query: str, source_filter: str, cumulative: bool, state: Session | None) -> list[Any]:
    """This session's finished run, opened in this tab: [tabs, source, header, timeline, slider, *round]."""
    view = view_of(state)
    r = view.last_round
    return [
        gr.update(selected="explore"),
        str(view.path),
        run_header(view),
        data.timeline(view),
        slider_at(view, r),
        *round_outputs(view, r, query, source_filter, cumulative),
    ]


# ---------------------------------------------------------------------------------------------- layout
@dataclass
class ExploreTab:
    source: gr.Textbox
    revision: gr.Dropdown
    open_btn: gr.Button
    header: gr.Markdown
    timeline: gr.Dataframe
    prev_btn: gr.Button
    slider: gr.Slider
    next_btn: gr.Button
    query: gr.Textbox
    source_filter: gr.Dropdown
    cumulative: gr.Checkbox
    round_outputs: list[Any]

    @property
    def filters(self) -> list[Any]:
        return [self.query, self.source_filter, self.cumulative]


def layout(opts: SpaceOptions) -> ExploreTab:
    """The tab's components, created inside the current `gr.Tab`."""
    with gr.Row(equal_height=True):
        where = (
            "Run directory or Hub dataset repo (owner/name)" if opts.allow_local else "Hub dataset repo (owner/name)"
        )
        if opts.named:
            where += " — or a bundled run: " + ", ".join(opts.named)
        initial = opts.sources[0] if opts.sources else ""
        source = gr.Textbox(label=where, value=initial, elem_id="source", scale=4)
        revision = gr.Dropdown(
            label="Hub revision or round tag",
            choices=[""],
            value=opts.revision,
            allow_custom_value=True,
            elem_id="revision",
            scale=2,
        )
        open_btn = gr.Button("Open", variant="primary", elem_id="open", scale=1)
    header = gr.Markdown(elem_id="run-header")
    timeline = gr.Dataframe(
        label="Timeline: one revision per round (click a row to see it)",
        interactive=False,
        elem_id="timeline",
        wrap=True,
    )
    with gr.Row(equal_height=True):
        prev_btn = gr.Button("◀ previous round", elem_id="prev", size="sm", scale=1)
        slider = gr.Slider(0, 1, value=0, step=1, label="Round", elem_id="round", scale=6)
        next_btn = gr.Button("next round ▶", elem_id="next", size="sm", scale=1)
    with gr.Row():
        with gr.Column(scale=3):
            weakness = gr.Textbox(label="Weakness targeted", interactive=False, elem_id="weakness")
            round_md = gr.Markdown(elem_id="round-detail")
        with gr.Column(scale=2):
            diff = gr.HTML(elem_id="summary-diff", label="Summary diff")
    gr.Markdown("### Samples of the round")
    with gr.Row():
        query = gr.Textbox(label="Search prompts and categories", elem_id="search", scale=3)
        source_filter = gr.Dropdown(
            choices=list(data.SOURCES), value="all", label="Source", elem_id="source-filter", scale=1
        )
        cumulative = gr.Checkbox(label="rounds 0..r, not only round r", elem_id="cumulative", scale=1)
    samples = gr.Dataframe(interactive=False, elem_id="samples", show_search="filter", wrap=True, max_height=420)
    rejects = gr.Dataframe(label="Rejected generations of the round", interactive=False, elem_id="rejects", wrap=True)
    labels = gr.Dataframe(
        label="Human labels (Argilla) of the round", interactive=False, elem_id="labels", visible=False
    )
    cov_plot = gr.Plot(label="Coverage over rounds", elem_id="coverage-plot")
    cat_plot = gr.Plot(label="Rows per category", elem_id="category-plot")
    return ExploreTab(
        source=source,
        revision=revision,
        open_btn=open_btn,
        header=header,
        timeline=timeline,
        prev_btn=prev_btn,
        slider=slider,
        next_btn=next_btn,
        query=query,
        source_filter=source_filter,
        cumulative=cumulative,
        round_outputs=[weakness, round_md, diff, samples, rejects, labels, cov_plot, cat_plot],
    )


def open_io(tab: ExploreTab, token: Any, state: Any) -> tuple[list[Any], list[Any]]:
    """Inputs and outputs of `open_run` (also fired on page load)."""
    inputs = [tab.source, tab.revision, token, *tab.filters, state]
    outputs = [state, tab.header, tab.timeline, tab.slider, tab.revision, *tab.round_outputs]
    return inputs, outputs


def wire(tab: ExploreTab, opts: SpaceOptions, token: Any, state: Any) -> None:
    """The tab's own events."""
    open_inputs, open_outputs = open_io(tab, token, state)
    opener = friendly(open_run, opts)
    tab.open_btn.click(opener, open_inputs, open_outputs, api_name="open_run")
    tab.source.submit(opener, open_inputs, open_outputs, api_visibility="private")
    # A round is drawn by explicit user actions only (not by `.change`, which programmatic
    # updates also fire): opening a run draws its own round, so nothing races it.
    round_inputs = [tab.slider, *tab.filters, state]
    show = friendly(show_round)
    tab.slider.release(show, round_inputs, tab.round_outputs, api_name="show_round", trigger_mode="always_last")
    tab.slider.input(show, round_inputs, tab.round_outputs, api_visibility="private", trigger_mode="always_last")
    for btn, delta in ((tab.prev_btn, -1), (tab.next_btn, +1)):
        btn.click(friendly(step, delta), [tab.slider, state], tab.slider, api_visibility="private").then(
            show, round_inputs, tab.round_outputs, api_visibility="private"
        )
    tab.timeline.select(pick_from_timeline, [state], tab.slider, api_visibility="private").then(
        show, round_inputs, tab.round_outputs, api_visibility="private"
    )
    filtering = friendly(filter_samples)
    for comp in tab.filters:
        comp.input(
            filtering,
            round_inputs,
            tab.round_outputs[3],  # the samples table
            api_visibility="private",
            show_progress="hidden",
            trigger_mode="always_last",
        )
