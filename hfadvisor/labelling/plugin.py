"""Loop plugins: human labels steer the weakness stage; new rows are queued in Argilla during a run.

* `LabelFeedbackPlugin` (`--use-labels`) reads the run's latest labels version (local, no
  network) and adds what humans found to the weakness prompt; the round's revision records it
  (`weakness_prompt`, `extra["human_labels"]`) and its card shows it with the label statistics.
* `LabelQueuePlugin` (`--label-every N`) connects when the run starts (a bad URL, key or
  workspace stops the run before anything is written), then every N rounds and at the last
  planned round pushes the rows Argilla does not hold yet and, with `--use-labels`, pulls the
  labels submitted so far. A labelling server that goes away mid-run does not stop the
  generation: the failure is logged and the rows go with the next push.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfadvisor.card import md
from hfadvisor.errors import LabellingError
from hfadvisor.labelling import client as lc
from hfadvisor.labelling import stats
from hfadvisor.labelling.pull import pull, sections_for
from hfadvisor.labelling.push import default_dataset, push
from hfadvisor.plugins import Plugin
from hfadvisor.records import CardSection
from hfadvisor.rundir.labels import Labels, latest, pulls

if TYPE_CHECKING:
    from hfadvisor.config import RunConfig
    from hfadvisor.records import Revision
    from hfadvisor.rundir.store import RunStore

log = logging.getLogger("hfadvisor.labelling")


class LabelFeedbackPlugin(Plugin):
    """Feeds the latest pulled human labels into the weakness prompt and the card."""

    name = "use_labels"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.path: Path | None = None
        self._loaded: int | None = None
        self._labels: Labels | None = None
        self._used: tuple[int, str | None] | None = None

    def setup(self, store: RunStore) -> None:
        self.path = store.path

    def labels(self) -> Labels | None:
        """The latest labels version, re-read only when a newer pull appeared."""
        if self.path is None:
            return None
        found = pulls(self.path)
        newest = found[-1] if found else None
        if newest != self._loaded:
            self._labels = latest(self.path)
            self._loaded = newest
        return self._labels

    def weakness_feedback(self, r: int, summary: list[str]) -> str | None:
        labels = self.labels()
        if labels is None:
            self._used = None
            return None
        text = stats.feedback(labels.rows, summary)
        self._used = (labels.manifest.pull, text)
        return text

    def before_commit(self, rev: Revision, rows: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> None:
        labels = self.labels()
        if labels is None:
            return
        used, self._used = self._used, None
        if used is not None:
            pull_n, text = used
            rev.extra["human_labels"] = {"pull": pull_n, "dataset": labels.manifest.dataset, "feedback": text}
            body = (
                "\n".join(f"> {md(line)}" for line in text.splitlines())
                if text
                else "The labels gave no feedback (nothing judged not harmful or off target, no category added)."
            )
            rev.sections.append(
                CardSection(title=stats.FEEDBACK_TITLE, markdown=f"From labels pull {pull_n}:\n\n{body}")
            )
        rev.sections.extend(sections_for(labels))


class LabelQueuePlugin(Plugin):
    """Pushes new rows to Argilla every N rounds (and pulls labels when `use_labels` is on)."""

    name = "label_every"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.every = int(config.label_every or 1)
        self.conn = lc.resolve()
        self.client = lc.connect(self.conn)
        try:
            lc.workspace(self.client, self.conn, config.argilla_workspace)
        except LabellingError:
            lc.close(self.client)
            raise
        self.dataset = config.argilla_dataset
        self.pending_from = 0  # first round not known to be in Argilla (0: ask the server about all)

    def setup(self, store: RunStore) -> None:
        self.dataset = self.config.argilla_dataset or default_dataset(store)

    def due(self, r: int) -> bool:
        return r % self.every == 0 or r >= self.config.rounds

    def _cycle(self, store: RunStore, r: int) -> str:
        result = push(
            store,
            dataset=self.dataset,
            workspace=self.config.argilla_workspace,
            rounds=(self.pending_from, r),
            conn=self.conn,
            client=self.client,
        )
        self.pending_from = r + 1
        note = f"labelling: {result.pushed} new rows sent to Argilla dataset {result.dataset!r}"
        if self.config.use_labels:
            template = Path(self.config.card_template) if self.config.card_template else None
            got = pull(
                store,
                dataset=self.dataset,
                workspace=self.config.argilla_workspace,
                conn=self.conn,
                client=self.client,
                card_template=template,
            )
            note += f"; labels pull {got.pull}" + (" (new)" if got.new else " (unchanged)")
        return note

    async def after_commit(self, store: RunStore, rev: Revision) -> None:
        if not self.due(rev.round):
            return
        try:
            log.info(await asyncio.to_thread(self._cycle, store, rev.round))
        except LabellingError as e:
            log.warning("labelling skipped after round %d: %s (the rows go with the next push)", rev.round, e)

    async def close(self) -> None:
        lc.close(self.client)
