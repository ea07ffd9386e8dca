"""Extension points of the round loop, so outside systems stay out of the loop's code.

A plugin can add a note to the weakness prompt (human labels), add sections and data to a
round's revision before it is committed (metrics), and act after the commit (push to the
Hub, queue samples in Argilla). `build_plugins` picks them from the run's config; each lives
in the module of its outside system and is imported only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hfadvisor.deps import hint
from hfadvisor.errors import MissingDependencyError

if TYPE_CHECKING:
    from hfadvisor.config import RunConfig
    from hfadvisor.records import Revision, RunInfo
    from hfadvisor.rundir.store import RunStore


class Plugin:
    """Override what you need; every hook is optional."""

    name = "plugin"

    def preflight(self, info: RunInfo) -> None:
        """Checks that need the run's identity, before anything is written (raise to refuse the run)."""

    def setup(self, store: RunStore) -> None:
        """Called once before the first round of a session (rebuild state from the run here)."""

    def weakness_feedback(self, r: int, summary: list[str]) -> str | None:
        """Extra text for round r's weakness prompt (rendered as `feedback`), or None."""
        return None

    def before_commit(self, rev: Revision, rows: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> None:
        """Add to `rev.sections` / `rev.extra` before the round is written and its card rendered."""

    async def after_commit(self, store: RunStore, rev: Revision) -> None:
        """Act on a committed round (it is already safe on disk)."""

    async def close(self) -> None:
        """Called once when the session ends (also after errors)."""


# config flag → (module, class). Modules are imported only when their flag is set.
REGISTRY: list[tuple[str, str, str]] = [
    ("metrics", "hfadvisor.metrics.plugin", "MetricsPlugin"),
    ("use_labels", "hfadvisor.labelling.plugin", "LabelFeedbackPlugin"),
    ("label_every", "hfadvisor.labelling.plugin", "LabelQueuePlugin"),
    ("push_to_hub", "hfadvisor.hub.plugin", "HubPlugin"),
]


def build_plugins(config: RunConfig) -> list[Plugin]:
    plugins: list[Plugin] = []
    for flag, module, cls in REGISTRY:
        if not getattr(config, flag, None):
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise MissingDependencyError(hint(_extra(flag), e.name or module, f"`{flag}`")) from None
        plugins.append(getattr(mod, cls)(config))
    return plugins


def _extra(flag: str) -> str:
    return {"use_labels": "argilla", "label_every": "argilla", "metrics": "metrics"}.get(flag, "dev")
