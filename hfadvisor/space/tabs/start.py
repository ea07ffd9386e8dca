"""The "Start a run" tab: a small run (embedded model or the user's endpoint) run in a thread and
shown round by round as it commits; then downloaded, explored or pushed to the Hub."""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from hfadvisor.space import data
from hfadvisor.space.data import SpaceError
from hfadvisor.space.guard import friendly
from hfadvisor.space.live import LiveRun, push
from hfadvisor.space.state import Session, SpaceOptions, session_of


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


def has_rounds(out: Path) -> bool:
    """At least one round committed (a run stopped early still has something to show)."""
    return (out / "revisions").is_dir() and any((out / "revisions").glob("round-*.json"))


def start_run(
    opts: SpaceOptions,
    mode: str,
    endpoint: str,
    api: str,
    rounds: float,
    batch_size: float,
    token: str,
    state: Session | None,
) -> Iterator[list[Any]]:
    """Start a run in a thread and follow it: yields [state, status, timeline, download, explore button]."""
    session = session_of(state)
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
    if lr.error and not has_rounds(out):
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


def stop_run(state: Session | None) -> str:
    if not isinstance(state, Session) or state.live is None or not state.live.running:
        return "No run of this session is going."
    state.live.stop.set()
    return "Stopping after the current round (complete rounds are kept)."


def server_login() -> bool:
    """The process has a Hugging Face login of its own (HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import get_token

    return bool(get_token())


def push_own_run(opts: SpaceOptions, repo_id: str, public: bool, token: str, state: Session | None) -> str:
    """Push this session's finished run with the session's token (or the server's login where allowed)."""
    if not isinstance(state, Session) or state.live is None or state.live.running:
        raise SpaceError("start a run and let it finish before pushing it")
    if not (repo_id or "").strip():
        raise SpaceError("type the Hub dataset repo to push to (owner/name)")
    if not token and not (opts.server_token and server_login()):
        raise SpaceError("type a Hugging Face token with write access to push")
    return push(state.live.output, repo_id.strip(), token or None, private=not public)


@dataclass
class StartTab:
    run_inputs: list[Any]  # mode, endpoint, api, rounds, batch
    start_btn: gr.Button
    stop_btn: gr.Button
    status: gr.HTML
    timeline: gr.Dataframe
    download: gr.DownloadButton
    explore_btn: gr.Button
    push_repo: gr.Textbox
    push_public: gr.Checkbox
    push_btn: gr.Button
    push_status: gr.Markdown


def layout(opts: SpaceOptions) -> StartTab:
    """The tab's components, created inside the current `gr.Tab`."""
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
        api = gr.Radio(["tgi", "chat"], value="tgi", label="API", elem_id="api", visible=opts.allow_endpoints)
    with gr.Row():
        rounds = gr.Slider(1, opts.max_rounds, value=3, step=1, label="Rounds", elem_id="rounds")
        batch = gr.Slider(1, opts.max_batch_size, value=6, step=1, label="Batch size", elem_id="batch")
    with gr.Row():
        start_btn = gr.Button("Start", variant="primary", elem_id="start")
        stop_btn = gr.Button("Stop after this round", variant="stop", elem_id="stop")
    status = gr.HTML(elem_id="live-status")
    timeline = gr.Dataframe(label="Rounds so far", interactive=False, elem_id="live-timeline", wrap=True)
    with gr.Row():
        download = gr.DownloadButton("Download the run (zip)", visible=False, elem_id="download")
        explore_btn = gr.Button("Explore this run", visible=False, elem_id="explore-own")
    with gr.Accordion("Push this run to the Hub", open=False):
        with gr.Row():
            push_repo = gr.Textbox(label="Hub dataset repo (owner/name)", elem_id="push-repo", scale=3)
            push_public = gr.Checkbox(label="public (default: private)", elem_id="push-public")
            push_btn = gr.Button("Push", elem_id="push")
        push_status = gr.Markdown(elem_id="push-status")
    return StartTab(
        run_inputs=[mode, endpoint, api, rounds, batch],
        start_btn=start_btn,
        stop_btn=stop_btn,
        status=status,
        timeline=timeline,
        download=download,
        explore_btn=explore_btn,
        push_repo=push_repo,
        push_public=push_public,
        push_btn=push_btn,
        push_status=push_status,
    )


def wire(tab: StartTab, opts: SpaceOptions, token: Any, state: Any) -> None:
    tab.start_btn.click(
        friendly(start_run, opts),
        [*tab.run_inputs, token, state],
        [state, tab.status, tab.timeline, tab.download, tab.explore_btn],
        api_name="start_run",
        concurrency_limit=1,  # one run at a time on a shared machine; others wait in the queue
        concurrency_id="runs",
        show_progress="minimal",
    )
    tab.stop_btn.click(friendly(stop_run), [state], tab.status, api_name="stop_run", queue=False)
    tab.push_btn.click(
        friendly(push_own_run, opts),
        [tab.push_repo, tab.push_public, token, state],
        tab.push_status,
        api_name="push_run",
    )
