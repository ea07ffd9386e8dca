"""Stateless API endpoints of the Space (for `gradio_client`): a run's timeline and one round.

Each call opens the run in a scratch session of its own and removes it before returning.
"""

from __future__ import annotations

from typing import Any

from hfadvisor.space import data
from hfadvisor.space.state import Session, SpaceOptions, open_view


def api_timeline(opts: SpaceOptions, source: str, revision: str = "", token: str = "") -> list[dict[str, Any]]:
    """The round timeline of a run: weakness, rows, rejects, summary update per round."""
    session = Session.new("hfadvisor-api-")
    try:
        view = open_view(opts, session, source, revision, token)
        return data.timeline(view).to_dict(orient="records")
    finally:
        session.close()


def api_round(opts: SpaceOptions, source: str, round: int, revision: str = "", token: str = "") -> dict[str, Any]:
    """One round of a run: its weakness, summary before/after, rows and rejects."""
    session = Session.new("hfadvisor-api-")
    try:
        view = open_view(opts, session, source, revision, token)
        rev = view.revision(int(round))
        return {
            "round": rev.round,
            "weakness": rev.weakness,
            "weaknesses": rev.weaknesses or ([rev.weakness] if rev.weakness else []),  # one per lane
            "summary_before": rev.summary_before,
            "summary_after": rev.summary_after,
            "summary_source": rev.summary_source,
            "rows": data.samples(view, rev.round).to_dict(orient="records"),
            "rejects": data.rejects_of(view, rev.round).to_dict(orient="records"),
        }
    finally:
        session.close()
