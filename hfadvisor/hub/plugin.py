"""`--push-to-hub org/name`: push each round to the Hub as soon as it is committed locally.

Everything checkable (token, endpoint, write access, repo content, visibility) is checked
when the plugin is built, before the run writes anything. If the Hub fails transiently
mid-run (network, 5xx, 429, after a few retries), the run goes on with a warning and the
next round's push sends the backlog; at the last planned round, or for any other failure
(a tag conflict, lost write access), the run stops with its rounds kept locally, and
`hfadvisor push` uploads them later.
"""

from __future__ import annotations

import asyncio
import sys

from hfadvisor.config import RunConfig
from hfadvisor.errors import HubError
from hfadvisor.hub.publish import HubPublisher, PushedRound
from hfadvisor.plugins import Plugin
from hfadvisor.records import Revision, RunInfo
from hfadvisor.rundir.store import RunStore

# Mid-run, the next round is another chance: give up sooner than `hfadvisor push` does (1 + 2 s of backoff).
MID_RUN_ATTEMPTS = 3


class HubPlugin(Plugin):
    name = "hub"

    def __init__(self, config: RunConfig) -> None:
        assert config.push_to_hub
        self.publisher = HubPublisher(
            config.push_to_hub,
            private=config.hub_private,
            tag_prefix=config.hub_tag_prefix,
            card_template=config.card_template,
            max_attempts=MID_RUN_ATTEMPTS,
        )
        self.last_round = config.rounds
        self.publisher.connect()

    def preflight(self, info: RunInfo) -> None:
        self.publisher.check_run(info.run_id)  # before round 0 of a new run is written locally

    def setup(self, store: RunStore) -> None:
        self.publisher.attach(store)
        ahead = self.publisher.rounds_on_hub()
        if ahead > store.rounds_done:  # continuing this copy would fork the run's history on the Hub
            repo = self.publisher.repo_id
            raise HubError(
                f"{repo} already has rounds 0..{ahead - 1} of this run and this copy only 0..{store.rounds_done - 1}: "
                f"continue the Hub's copy (`hfadvisor pull {repo} NEW_DIR`) or push this one to a new repo"
            )
        self._push(store)  # rounds written before this session: round 0 of a new run, or a backlog

    async def after_commit(self, store: RunStore, rev: Revision) -> None:
        try:
            await asyncio.to_thread(self._push, store)
        except HubError as e:
            if not e.retryable or rev.round >= self.last_round:
                raise
            print(f"hub: warning: {e}; the run goes on, the next round's push retries", file=sys.stderr, flush=True)

    def _push(self, store: RunStore) -> None:
        try:
            self.publisher.push_pending(store, self._report)
        except HubError as e:
            repo = self.publisher.repo_id
            raise HubError(
                f"{e} — the run's rounds are kept locally: `hfadvisor push {store.path} {repo}` uploads them",
                retryable=e.retryable,
            ) from None

    def _report(self, pushed: PushedRound) -> None:
        print(f"hub: {pushed.line(self.publisher.repo_id)}", file=sys.stderr, flush=True)
