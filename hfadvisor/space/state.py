"""What the Space's handlers share: the deployment's options and one browser session's state.

Handlers take both explicitly (options bound when the app is built, the session as a Gradio
`State` input), so each tab's handlers are plain functions a test can call without a browser.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hfadvisor.space import data
from hfadvisor.space.data import RunView, SpaceError
from hfadvisor.space.live import LiveRun


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

    @classmethod
    def new(cls, prefix: str = "hfadvisor-session-") -> Session:
        return cls(workdir=Path(tempfile.mkdtemp(prefix=prefix)))

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


def close_session(session: Session | None) -> None:
    """Gradio's `delete_callback` for the session state."""
    if isinstance(session, Session):
        session.close()


def session_of(state: Session | None) -> Session:
    """The session in `state`, or a new one (the first event of a browser session)."""
    return state if isinstance(state, Session) else Session.new()


def view_of(state: Session | None, key: str = "main") -> RunView:
    """A run this session opened (`main` in Explore, `a`/`b` in Compare)."""
    if not isinstance(state, Session) or key not in state.views:
        raise SpaceError("open a run first (a run directory or a Hub dataset repo id)")
    return state.views[key]


def open_view(opts: SpaceOptions, session: Session, source: str, revision: str | None, token: str | None) -> RunView:
    """Open what the user typed: this session's own run, a bundled run, a run directory or a Hub repo."""
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
