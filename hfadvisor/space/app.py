"""The Gradio app: explore a run round by round, compare two runs, start a small run and watch it.

Used by `spaces/app.py` (a deployable Hugging Face Space) and by `hfadvisor space`. Everything
shown is computed by `hfadvisor.space.data`; this module only lays it out and wires events.

Secrets: the token box is an input of the events that need it and nothing else. It is never
kept in session state, in the environment or on disk, never put in a message (errors are
scrubbed), and the browser-side run history (which would store inputs) is switched off.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import os
import shutil
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfadvisor.errors import HFAdvisorError, scrub
from hfadvisor.space import data, plots
from hfadvisor.space.data import RunView, SpaceError
from hfadvisor.space.live import LiveRun, push

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger("hfadvisor.space")

CSS = """
.summary-diff { font-family: ui-monospace, monospace; font-size: 0.9em; line-height: 1.5; }
.summary-diff .head { font-family: inherit; font-weight: 600; margin-bottom: 0.3em; }
.summary-diff .added { background: #dcfce7; color: #14532d; }
.summary-diff .removed { background: #fee2e2; color: #7f1d1d; text-decoration: line-through; }
.summary-diff .op { display: inline-block; width: 1.2em; color: #6b7280; }
.summary-diff .note { color: #6b7280; font-style: italic; }
#live-status progress { width: 100%; height: 0.9em; }
"""


@dataclass
class SpaceOptions:
    """How a Space instance may be used.

    A public Space must neither read server paths for visitors nor lend the owner's login to
    them: `allow_local=False, server_token=False`. `hfadvisor space` on one's own machine may.
    """

    sources: list[str] = field(default_factory=list)  # runs opened on page load: [explore] or [explore, compare]
    named: dict[str, Path] = field(default_factory=dict)  # runs the operator ships, by name (no server paths shown)
    revision: str = ""
    allow_local: bool = True
    server_token: bool = True
    allow_endpoints: bool = True
    # keep runs started from the page here; default: the session's scratch space, removed with it
    runs_dir: Path | None = None
    max_rounds: int = 10
    max_batch_size: int = 16
    title: str = "hfadvisor · Data Advisor runs, round by round"

    @classmethod
    def public_space(cls, sources: list[str] | None = None) -> SpaceOptions:
        return cls(sources=sources or [], allow_local=False, server_token=False)


@dataclass
class Session:
    """Per-browser-session state (server side): opened runs, this session's own run, scratch space."""

    workdir: Path
    views: dict[str, RunView] = field(default_factory=dict)
    live: LiveRun | None = None
    own_runs: set[str] = field(default_factory=set)

    @property
    def runs(self) -> Path:
        """Where this session's own runs go unless the operator keeps them (`--runs-dir`)."""
        return self.workdir / "runs"

    def close(self) -> None:
        """Remove the session's scratch space, its own runs included (a public Space never fills up).

        Called by Gradio when the session's state expires (an hour after the tab closes). A run
        still going is asked to stop and removed once its thread has left the directory.
        """
        live = self.live
        if live is None or not live.running:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        live.stop.set()

        def remove_when_stopped() -> None:
            if live.thread is not None:
                live.thread.join()
            shutil.rmtree(self.workdir, ignore_errors=True)

        threading.Thread(target=remove_when_stopped, name="hfadvisor-session-close", daemon=True).start()


def _close_session(session: Session | None) -> None:
    if isinstance(session, Session):
        session.close()


def forget_server_token() -> None:
    """For a public Space: make this process's own Hugging Face login unreachable.

    huggingface_hub falls back to `get_token()` (HF_TOKEN, the stored token file, CI's OIDC)
    whenever a client gets no token, so an endpoint a visitor types would otherwise receive the
    owner's token. Visitors' tokens are passed explicitly and are unaffected.
    """
    from huggingface_hub import constants

    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        os.environ.pop(key, None)
    nowhere = str(Path(tempfile.mkdtemp(prefix="hfadvisor-no-login-")) / "token")
    os.environ["HF_TOKEN_PATH"] = nowhere  # the documented variable, for anything imported later
    constants.HF_TOKEN_PATH = nowhere  # huggingface_hub read it at import; this is what get_token() reads
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"


# ---------------------------------------------------------------------------------------------- errors
def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every user-facing failure becomes one readable line in the page; never a traceback, never a token."""
    import gradio as gr

    params = list(inspect.signature(fn).parameters)
    token_at = params.index("token") if "token" in params else None

    def token_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        if token_at is not None and token_at < len(args):
            return args[token_at] or None
        return kwargs.get("token") or None

    def translate(e: Exception, token: str | None) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, HFAdvisorError):
            return gr.Error(scrub(str(e), token), print_exception=False)
        log.error("%s failed:\n%s", fn.__name__, scrub(traceback.format_exc(), token))
        return gr.Error(
            f"something went wrong ({type(e).__name__}); the details are in the server log", print_exception=False
        )

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise translate(e, token_of(args, kwargs)) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise translate(e, token_of(args, kwargs)) from None

    return wrapper


# ---------------------------------------------------------------------------------------------- views
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


def _session(state: Session | None) -> Session:
    if isinstance(state, Session):
        return state
    return Session(workdir=Path(tempfile.mkdtemp(prefix="hfadvisor-session-")))


def _view(state: Session | None, key: str = "main") -> RunView:
    if not isinstance(state, Session) or key not in state.views:
        raise SpaceError("open a run first (a run directory or a Hub dataset repo id)")
    return state.views[key]


def build_app(options: SpaceOptions | None = None) -> gr.Blocks:
    """The whole Space as a `gr.Blocks`; launch it with `launch_kwargs()`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    opts = options or SpaceOptions()
    initial = opts.sources[0] if opts.sources else ""
    initial_b = opts.sources[1] if len(opts.sources) > 1 else ""

    def open_view(session: Session, source: str, revision: str | None, token: str | None) -> RunView:
        text = (source or "").strip()
        if text and text in session.own_runs:  # this session's own run, even where server paths are closed
            return data.open_local(Path(text), label=f"this session's run ({Path(text).name})")
        if text in opts.named:  # shipped by the operator
            if (revision or "").strip():
                raise SpaceError(f"{text} is a bundled run with every round; a revision applies to Hub repos only")
            return data.open_local(opts.named[text], label=text)
        return data.open_source(
            text,
            revision,
            token=token or None,
            allow_local=opts.allow_local,
            server_token=opts.server_token,
            workdir=session.workdir,
        )

    # ------------------------------------------------------------------ explore
    def round_outputs(view: RunView, r: int, query: str, source: str, cumulative: bool) -> list[Any]:
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

    @_friendly
    def open_run(
        source: str,
        revision: str,
        token: str,
        query: str,
        source_filter: str,
        cumulative: bool,
        state: Session | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's way of asking for a progress bar
    ) -> list[Any]:
        session = _session(state)
        progress(0.1, desc="opening the run (a Hub repo is downloaded first)")
        view = open_view(session, source, revision, token)
        session.views["main"] = view
        r = view.last_round
        tags = view.hub.tags if view.hub else []
        return [
            session,
            run_header(view),
            data.timeline(view),
            gr.update(minimum=0, maximum=max(view.last_round, 1), value=r, interactive=view.last_round > 0),
            gr.update(choices=["", *tags], value=revision or ""),
            *round_outputs(view, r, query, source_filter, cumulative),
        ]

    @_friendly
    def show_round(r: float, query: str, source_filter: str, cumulative: bool, state: Session | None) -> list[Any]:
        view = _view(state)
        return round_outputs(view, min(int(r), view.last_round), query, source_filter, cumulative)

    @_friendly
    def filter_samples(r: float, query: str, source_filter: str, cumulative: bool, state: Session | None) -> Any:
        view = _view(state)
        return data.samples(
            view, min(int(r), view.last_round), query=query or "", source=source_filter, cumulative=cumulative
        )

    def step(delta: int) -> Callable[[float, Session | None], Any]:
        @_friendly
        def go(r: float, state: Session | None) -> Any:
            view = _view(state)
            return gr.update(value=max(0, min(view.last_round, int(r) + delta)))

        return go

    def pick_from_timeline(state: Session | None, evt: gr.SelectData) -> Any:
        if not isinstance(state, Session) or "main" not in state.views or evt.index is None:
            return gr.update()
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        return gr.update(value=min(int(row), state.views["main"].last_round))

    pick_from_timeline.__annotations__["evt"] = gr.SelectData  # real class: annotations here are strings

    # ------------------------------------------------------------------ compare
    @_friendly
    def compare(
        source_a: str,
        rev_a: str,
        source_b: str,
        rev_b: str,
        token: str,
        state: Session | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> list[Any]:
        session = _session(state)
        progress(0.1, desc="opening run A")
        a = open_view(session, source_a, rev_a, token)
        if not (source_b or "").strip():
            raise SpaceError("give a second run to compare with (e.g. the Self-Instruct baseline)")
        progress(0.5, desc="opening run B")
        b = open_view(session, source_b, rev_b, token)
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

    # ------------------------------------------------------------------ start a run
    def live_status(lr: LiveRun, total: int, current: int, stage: str, phase: str = "running") -> str:
        """Progress of a live run; `data-phase` (running, finished, stopped) lets scripts wait on it."""
        complete = len([r for r in lr.revisions if r.round > 0])
        rows = sum(r.rows for r in lr.revisions)
        bar = f'<progress value="{complete}" max="{max(total, 1)}"></progress>'
        what = f"round {current} of {total} · {html.escape(stage)}" if current else html.escape(stage)
        return (
            f'<div data-phase="{phase}"><b>{what}</b> · {complete} of {total} rounds complete · '
            f"{rows} rows so far{bar}</div>"
        )

    @_friendly
    def start_run(
        mode: str, endpoint: str, api: str, rounds: float, batch_size: float, token: str, state: Session | None
    ) -> Iterator[list[Any]]:
        session = _session(state)
        if session.live is not None and session.live.running:
            raise SpaceError("a run of this session is still going: stop it or wait for it to finish")
        url = (endpoint or "").strip()
        if url and not opts.allow_endpoints:
            raise SpaceError("this Space runs the embedded model only")
        rounds_i, batch_i = int(rounds), int(batch_size)
        if not 1 <= rounds_i <= opts.max_rounds or not 1 <= batch_i <= opts.max_batch_size:
            raise SpaceError(f"a Space run is small: 1–{opts.max_rounds} rounds of 1–{opts.max_batch_size}")
        out = (opts.runs_dir or session.runs) / f"{mode}-{uuid.uuid4().hex[:8]}"
        overrides: dict[str, Any] = {"rounds": rounds_i, "batch_size": batch_i}
        if url:
            overrides.update(endpoints=[url], api=api or "tgi")
        lr = LiveRun(out, overrides, mode=mode)
        lr.start(token or None)  # plan errors (bad URL, ...) raise here, before anything is written
        session.live = lr
        session.own_runs.add(str(out))
        where = url or "the embedded model (SmolLM2-135M)"
        hidden = gr.update(visible=False)
        yield [session, live_status(lr, rounds_i, 0, f"starting on {where}"), data.timeline_of([]), hidden, hidden]
        total, current, stage = rounds_i, 0, "starting"
        for ev in lr.follow():
            if ev.kind == "round_started":
                total, current, stage = ev.total, ev.round, "weakness" if mode == "advisor" else "generating"
            elif ev.kind == "stage":
                stage = ev.stage
            elif ev.kind == "round_done":
                stage = f"round {ev.round} committed"
            elif ev.kind in ("finished", "failed"):
                break
            yield [session, live_status(lr, total, current, stage), data.timeline_of(lr.revisions), hidden, hidden]
        if lr.error and not data_exists(out):
            raise SpaceError(lr.error)
        view = data.open_local(out, label=f"this session's run ({out.name})")
        session.views["main"] = view
        archive = data.zip_run(out, session.workdir / "downloads")
        if lr.error:
            note, phase = f"stopped: {lr.error}", "stopped"
        else:
            note, phase = f"finished: rounds 0–{view.last_round}, {len(view.rows)} rows", "finished"
        yield [
            session,
            live_status(lr, total, 0, note, phase),
            data.timeline(view),
            gr.update(value=str(archive), visible=True),
            gr.update(visible=True),
        ]

    def data_exists(out: Path) -> bool:
        return (out / "revisions").is_dir() and any((out / "revisions").glob("round-*.json"))

    @_friendly
    def stop_run(state: Session | None) -> str:
        if not isinstance(state, Session) or state.live is None or not state.live.running:
            return "No run of this session is going."
        state.live.stop.set()
        return "Stopping after the current round (complete rounds are kept)."

    @_friendly
    def show_own_run(query: str, source_filter: str, cumulative: bool, state: Session | None) -> list[Any]:
        view = _view(state)
        r = view.last_round
        return [
            gr.update(selected="explore"),
            str(view.path),
            run_header(view),
            data.timeline(view),
            gr.update(minimum=0, maximum=max(r, 1), value=r, interactive=r > 0),
            *round_outputs(view, r, query, source_filter, cumulative),
        ]

    @_friendly
    def push_own_run(repo_id: str, public: bool, token: str, state: Session | None) -> str:
        if not isinstance(state, Session) or state.live is None or state.live.running:
            raise SpaceError("start a run and let it finish before pushing it")
        if not (repo_id or "").strip():
            raise SpaceError("type the Hub dataset repo to push to (owner/name)")
        if not token and not opts.server_token:
            raise SpaceError("type a Hugging Face token with write access to push")
        return push(state.live.output, repo_id.strip(), token or None, private=not public)

    # ------------------------------------------------------------------ API (stateless, for gradio_client)
    def api_session() -> Session:
        return Session(workdir=Path(tempfile.mkdtemp(prefix="hfadvisor-api-")))

    @_friendly
    def api_timeline(source: str, revision: str = "", token: str = "") -> list[dict[str, Any]]:
        """The round timeline of a run: weakness, rows, rejects, summary update per round."""
        session = api_session()
        try:
            view = open_view(session, source, revision, token)
            return data.timeline(view).to_dict(orient="records")
        finally:
            session.close()

    @_friendly
    def api_round(source: str, round: int, revision: str = "", token: str = "") -> dict[str, Any]:
        """One round of a run: its weakness, summary before/after, rows and rejects."""
        session = api_session()
        try:
            view = open_view(session, source, revision, token)
            rev = view.revision(int(round))
            return {
                "round": rev.round,
                "weakness": rev.weakness,
                "summary_before": rev.summary_before,
                "summary_after": rev.summary_after,
                "summary_source": rev.summary_source,
                "rows": data.samples(view, rev.round).to_dict(orient="records"),
                "rejects": data.rejects_of(view, rev.round).to_dict(orient="records"),
            }
        finally:
            session.close()

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="hfadvisor", analytics_enabled=False) as demo:
        state = gr.State(None, delete_callback=_close_session)
        gr.Markdown(f"# {opts.title}")
        gr.Markdown(
            "Every round of a [Data Advisor](https://arxiv.org/abs/2410.05269) run is a dataset revision: "
            "the weakness it targeted, what the summary learned, the rows it wrote and what it rejected. "
            "**Content warning:** the rows are harmful requests, made to train models to refuse them."
        )
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
                with gr.Row(equal_height=True):
                    where = (
                        "Run directory or Hub dataset repo (owner/name)"
                        if opts.allow_local
                        else "Hub dataset repo (owner/name)"
                    )
                    if opts.named:
                        where += " — or a bundled run: " + ", ".join(opts.named)
                    source = gr.Textbox(
                        label=where,
                        value=initial,
                        elem_id="source",
                        scale=4,
                    )
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
                timeline_df = gr.Dataframe(
                    label="Timeline: one revision per round (click a row to see it)",
                    interactive=False,
                    elem_id="timeline",
                    wrap=True,
                )
                with gr.Row(equal_height=True):
                    prev_btn = gr.Button("◀ previous round", elem_id="prev", size="sm", scale=1)
                    round_slider = gr.Slider(0, 1, value=0, step=1, label="Round", elem_id="round", scale=6)
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
                samples_df = gr.Dataframe(
                    interactive=False, elem_id="samples", show_search="filter", wrap=True, max_height=420
                )
                rejects_df = gr.Dataframe(
                    label="Rejected generations of the round", interactive=False, elem_id="rejects", wrap=True
                )
                labels_df = gr.Dataframe(
                    label="Human labels (Argilla) of the round", interactive=False, elem_id="labels", visible=False
                )
                cov_plot = gr.Plot(label="Coverage over rounds", elem_id="coverage-plot")
                cat_plot = gr.Plot(label="Rows per category", elem_id="category-plot")

            with gr.Tab("Compare runs", id="compare"):
                gr.Markdown("Two runs on the same budget, e.g. `hfadvisor run` (advisor) and `hfadvisor baseline`.")
                with gr.Row():
                    source_a = gr.Textbox(label="Run A (advisor)", value=initial, elem_id="source-a", scale=3)
                    rev_a = gr.Textbox(label="revision A", elem_id="rev-a", scale=1)
                    source_b = gr.Textbox(label="Run B (baseline)", value=initial_b, elem_id="source-b", scale=3)
                    rev_b = gr.Textbox(label="revision B", elem_id="rev-b", scale=1)
                compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                compare_df = gr.Dataframe(label="At a glance", interactive=False, elem_id="compare-table")
                cmp_cov = gr.Plot(label="Coverage and diversity", elem_id="compare-coverage")
                cmp_cat = gr.Plot(label="Rows per category", elem_id="compare-categories")

            with gr.Tab("Start a run", id="start"):
                gr.Markdown(
                    "A small run, shown round by round as it commits. Without an endpoint it uses the embedded "
                    "SmolLM2-135M model (it shows the mechanics, not data quality)."
                )
                with gr.Row():
                    mode = gr.Radio(["advisor", "baseline"], value="advisor", label="Method", elem_id="mode")
                    endpoint = gr.Textbox(
                        label="Endpoint (TGI or OpenAI-compatible base URL; empty = embedded model)",
                        elem_id="endpoint",
                        visible=opts.allow_endpoints,
                        scale=3,
                    )
                    api = gr.Radio(
                        ["tgi", "chat"], value="tgi", label="API", elem_id="api", visible=opts.allow_endpoints
                    )
                with gr.Row():
                    rounds = gr.Slider(1, opts.max_rounds, value=3, step=1, label="Rounds", elem_id="rounds")
                    batch = gr.Slider(1, opts.max_batch_size, value=6, step=1, label="Batch size", elem_id="batch")
                with gr.Row():
                    start_btn = gr.Button("Start", variant="primary", elem_id="start")
                    stop_btn = gr.Button("Stop after this round", variant="stop", elem_id="stop")
                live_md = gr.HTML(elem_id="live-status")
                live_df = gr.Dataframe(label="Rounds so far", interactive=False, elem_id="live-timeline", wrap=True)
                with gr.Row():
                    download = gr.DownloadButton("Download the run (zip)", visible=False, elem_id="download")
                    show_btn = gr.Button("Explore this run", visible=False, elem_id="explore-own")
                with gr.Accordion("Push this run to the Hub", open=False):
                    with gr.Row():
                        push_repo = gr.Textbox(label="Hub dataset repo (owner/name)", elem_id="push-repo", scale=3)
                        push_public = gr.Checkbox(label="public (default: private)", elem_id="push-public")
                        push_btn = gr.Button("Push", elem_id="push")
                    push_md = gr.Markdown(elem_id="push-status")

        # ------------------------------------------------------------------ events
        filters = [query, source_filter, cumulative]
        round_outs = [weakness, round_md, diff, samples_df, rejects_df, labels_df, cov_plot, cat_plot]
        open_outs = [state, header, timeline_df, round_slider, revision, *round_outs]
        open_inputs = [source, revision, token, *filters, state]
        open_btn.click(open_run, open_inputs, open_outs, api_name="open_run")
        source.submit(open_run, open_inputs, open_outs, api_visibility="private")
        # A round is drawn by explicit user actions only (not by `.change`, which programmatic
        # updates also fire): opening a run draws its own round, so nothing races it.
        round_inputs = [round_slider, *filters, state]
        round_slider.release(show_round, round_inputs, round_outs, api_name="show_round", trigger_mode="always_last")
        round_slider.input(show_round, round_inputs, round_outs, api_visibility="private", trigger_mode="always_last")
        for btn, delta in ((prev_btn, -1), (next_btn, +1)):
            btn.click(step(delta), [round_slider, state], round_slider, api_visibility="private").then(
                show_round, round_inputs, round_outs, api_visibility="private"
            )
        timeline_df.select(pick_from_timeline, [state], round_slider, api_visibility="private").then(
            show_round, round_inputs, round_outs, api_visibility="private"
        )
        for comp in (query, source_filter, cumulative):
            comp.input(
                filter_samples,
                round_inputs,
                samples_df,
                api_visibility="private",
                show_progress="hidden",
                trigger_mode="always_last",
            )
        compare_btn.click(
            compare,
            [source_a, rev_a, source_b, rev_b, token, state],
            [state, compare_df, cmp_cov, cmp_cat],
            api_name="compare",
        )
        start_btn.click(
            start_run,
            [mode, endpoint, api, rounds, batch, token, state],
            [state, live_md, live_df, download, show_btn],
            api_name="start_run",
            concurrency_limit=1,  # one run at a time on a shared machine; others wait in the queue
            concurrency_id="runs",
            show_progress="minimal",
        )
        stop_btn.click(stop_run, [state], live_md, api_name="stop_run", queue=False)
        show_btn.click(
            show_own_run,
            [*filters, state],
            [tabs, source, header, timeline_df, round_slider, *round_outs],
            api_visibility="private",
        )
        push_btn.click(push_own_run, [push_repo, push_public, token, state], push_md, api_name="push_run")
        gr.api(api_timeline, api_name="timeline")
        gr.api(api_round, api_name="round")

        if initial:  # chained, not parallel: both events fill the same session state
            loaded = demo.load(open_run, open_inputs, open_outs, api_visibility="private")
            if initial_b:
                loaded.then(
                    compare,
                    [source_a, rev_a, source_b, rev_b, token, state],
                    [state, compare_df, cmp_cov, cmp_cat],
                    api_visibility="private",
                )
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Launch settings every deployment shares: no browser-side run history (it would store the
    token box), no error details beyond the readable messages, our CSS."""
    return {"css": CSS, "run_history": False, "show_error": False, "footer_links": ["api"]}
