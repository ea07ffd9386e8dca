"""Runs started from the Space: executed in a background thread, rounds reported as they commit.

The run itself is `hfadvisor.api.plan_run` + `execute` with an observer that puts events on a
queue; the UI drains the queue and redraws. A round is committed atomically by the loop, so
stopping (between rounds) or a crash of the page never leaves a half-written round.

The session's token is handed to the endpoint client for this run only: it is never put in
the environment (which every session shares), never logged and never written.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfadvisor.errors import HFAdvisorError, RunStopped, scrub
from hfadvisor.records import Revision
from hfadvisor.rundir.store import RunStore

log = logging.getLogger("hfadvisor.space")


@dataclass
class Event:
    kind: str  # round_started | stage | round_done | finished | failed
    round: int = 0
    total: int = 0
    stage: str = ""
    rev: Revision | None = None
    rows_total: int = 0
    message: str = ""


class QueueObserver:
    """The loop's Observer protocol, forwarded to a queue; also where a stop request takes effect."""

    def __init__(self, events: queue.Queue[Event], stop: threading.Event) -> None:
        self.events = events
        self.stop = stop
        self.total = 0

    def round_started(self, r: int, total: int) -> None:
        if self.stop.is_set():
            raise RunStopped(f"stopped before round {r} as asked; rounds 0..{r - 1} are complete")
        self.total = total
        self.events.put(Event("round_started", round=r, total=total))

    def stage(self, name: str) -> None:
        self.events.put(Event("stage", stage=name))

    def round_done(self, rev: Revision, rows_total: int) -> None:
        self.events.put(Event("round_done", round=rev.round, total=self.total, rev=rev, rows_total=rows_total))


@dataclass
class LiveRun:
    """One run started from the Space, in its own thread."""

    output: Path
    overrides: dict[str, Any]
    mode: str = "advisor"
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: str | None = None
    revisions: list[Revision] = field(default_factory=list)

    def start(self, token: str | None) -> None:
        """Validate the plan here (errors reach the page at once), then run it in a thread."""
        from hfadvisor import api

        plan = api.plan_run(self.output, mode=self.mode, **self.overrides)
        observer = QueueObserver(self.events, self.stop)

        def target() -> None:
            try:
                asyncio.run(api.execute(plan, observer, token=token or None))
                self.events.put(Event("finished"))
            except HFAdvisorError as e:
                self.events.put(Event("failed", message=scrub(str(e), token)))
            except Exception as e:  # a bug, not a user error: log it (scrubbed), show one line
                log.error("run %s failed:\n%s", self.output.name, scrub(traceback.format_exc(), token))
                first = scrub(str(e).strip().splitlines()[0] if str(e).strip() else "", token)
                self.events.put(Event("failed", message=f"the run failed ({type(e).__name__}: {first})"))

        self.thread = threading.Thread(target=target, name=f"hfadvisor-run-{self.output.name}", daemon=True)
        self.thread.start()

    def follow(self, poll: float = 0.5) -> Iterator[Event]:
        """Events until the run ends; a `stage` heartbeat-free wait yields nothing."""
        while True:
            try:
                ev = self.events.get(timeout=poll)
            except queue.Empty:
                if self.thread is not None and not self.thread.is_alive() and self.events.empty():
                    return
                continue
            if ev.kind == "round_done" and ev.rev is not None:
                self.revisions.append(ev.rev)
            if ev.kind == "failed":
                self.error = ev.message
            yield ev
            if ev.kind in ("finished", "failed"):
                return

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def push(run_dir: Path, repo_id: str, token: str | None, *, private: bool = True) -> str:
    """Push a run to the Hub with `hfadvisor.hub` (one commit and tag per round); returns a summary line."""
    try:
        from hfadvisor.hub.publish import HubPublisher, tag_name
    except ImportError:
        raise HFAdvisorError(
            "pushing needs the Hub support of hfadvisor (hfadvisor.hub), which is not installed"
        ) from None
    store = RunStore.open(run_dir, repair=False)
    try:
        publisher = HubPublisher(repo_id, private=private, token=token)  # the session's token for this push only
        publisher.connect()
        publisher.attach(store)
        pushed = publisher.push_pending(store)
    except HFAdvisorError as e:
        raise HFAdvisorError(scrub(str(e), token)) from None
    latest = tag_name(publisher.tag_prefix, store.rounds_done - 1)
    visibility = "private" if private else "public"
    return f"pushed {len(pushed)} round(s) to {repo_id} ({visibility}); latest tag {latest}"
