"""The Hub side of a run: every round pushed as its own commit and tag, and a run pulled back.

The Hub repo mirrors the run directory (`run.json`, `data/`, `rejects/`, `cards/`,
`revisions/`), plus a `README.md` card rendered for the Hub, so it is a complete, resumable
record: `hfadvisor pull` restores a run that `hfadvisor run` continues on another machine.
"""

from __future__ import annotations

from hfadvisor.errors import HubError
from hfadvisor.hub.publish import HubPublisher, PushedResponses, PushedRound, push_run
from hfadvisor.hub.pull import pull_run

__all__ = ["HubError", "HubPublisher", "PushedResponses", "PushedRound", "pull_run", "push_run"]
