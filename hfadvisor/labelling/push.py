"""Send a run's rows to an Argilla dataset for human labelling.

Idempotent by construction: record ids are the run's stable row ids, and a push first asks
the server which of the selected rows it already holds and sends only the others. So pushing
twice never duplicates, a record somebody already labelled is never rewritten, and a push
interrupted half-way (Ctrl-C, a crash, the server going away) completes when run again.
Pushing writes nothing to the run directory.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfadvisor.errors import LabellingError, RunStateError
from hfadvisor.labelling import client as lc
from hfadvisor.labelling import schema
from hfadvisor.labelling.client import Connection
from hfadvisor.records import ROW_FEATURES
from hfadvisor.rundir.store import RunStore

if TYPE_CHECKING:
    import argilla as rg

BATCH_SIZE = 100
MAX_BATCH = 500  # the SDK's MAX_RECORDS_PER_UPSERT_BULK
LIST_BATCH = 500


@dataclass
class PushResult:
    """What one push did; `pushed / seconds` is the upload rate."""

    dataset: str
    workspace: str
    url: str
    created: bool
    selected: int
    already: int
    pushed: int
    without_label: int  # pushed rows whose category is not a label of the dataset (no suggestion)
    seconds: float  # the whole push: connection, dataset, listing, upload
    upload_seconds: float

    @property
    def records_per_s(self) -> float:
        """Upload rate (records sent / time spent sending them)."""
        return self.pushed / self.upload_seconds if self.upload_seconds > 0 else 0.0


def default_dataset(store: RunStore) -> str:
    """A dataset name per run, so push and pull agree without flags."""
    return f"hfadvisor-{store.info.run_id[:8]}"


def parse_rounds(spec: str | None, rounds_done: int) -> tuple[int, int] | None:
    """'3-7', '5', '3-' or '-7' → an inclusive range checked against the run; None = all rounds."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    m = re.fullmatch(r"\s*(\d*)\s*(-?)\s*(\d*)\s*", spec)
    if not m or not (m.group(1) or m.group(3)) or (not m.group(2) and not m.group(1)):
        raise RunStateError(f"--rounds {spec!r}: use a round (5) or a range (3-7, 3-, -7)")
    last = rounds_done - 1
    lo = int(m.group(1)) if m.group(1) else 0
    hi = (int(m.group(3)) if m.group(3) else last) if m.group(2) else lo
    if lo > hi or lo > last:
        raise RunStateError(f"--rounds {spec!r} selects no complete round: the run has rounds 0..{last}")
    return lo, min(hi, last)


def select_rows(store: RunStore, rounds: tuple[int, int] | None) -> list[dict[str, Any]]:
    rows = store.table().to_pylist()
    if rounds is None:
        return rows
    lo, hi = rounds
    return [r for r in rows if lo <= r["round"] <= hi]


def existing_ids(dataset: rg.Dataset, rounds: tuple[int, int] | None) -> set[str]:
    """Record ids the dataset already holds (restricted to the rounds when given)."""
    import argilla as rg

    query = None
    if rounds is not None:
        lo, hi = rounds
        query = rg.Query(filter=rg.Filter([("metadata.round", ">=", lo), ("metadata.round", "<=", hi)]))
    records = dataset.records(query=query, batch_size=LIST_BATCH, with_suggestions=False, with_responses=False)
    return {str(r.id) for r in records}


def open_dataset(
    client: rg.Argilla,
    conn: Connection,
    store: RunStore,
    name: str,
    workspace: str | None,
    min_submitted: int | None,
) -> tuple[rg.Dataset, str, bool, list[str]]:
    """Get or create the labelling dataset, apply a changed task distribution; + its category labels."""
    import argilla as rg
    from argilla._exceptions import ConflictError

    ws = lc.workspace(client, conn, workspace)
    ds = lc.find_dataset(client, conn, ws, name)
    created = False
    if ds is None:
        with_response = "response" in ROW_FEATURES
        settings = schema.settings(
            schema.run_categories(store), min_submitted=min_submitted or 1, with_response=with_response
        )
        with lc.errors(conn, f"creating dataset {name!r}"):
            try:
                ds = rg.Dataset(name=name, workspace=ws, settings=settings, client=client).create()
                created = True
            except ConflictError:  # created concurrently by another push: use it
                ds = lc.find_dataset(client, conn, ws, name)
        if ds is None:
            raise LabellingError(f"Argilla dataset {name!r} could not be created in workspace {ws.name!r}")
    labels = schema.check(ds, str(ws.name))
    if min_submitted and ds.settings.distribution.min_submitted != min_submitted:
        with lc.errors(conn, f"setting the task distribution of {name!r}"):
            ds.settings.distribution = rg.TaskDistribution(min_submitted=min_submitted)
            ds.update()
    return ds, str(ws.name), created, labels


def push(
    run: str | Path | RunStore,
    *,
    dataset: str | None = None,
    workspace: str | None = None,
    rounds: tuple[int, int] | None = None,
    min_submitted: int | None = None,
    batch_size: int = BATCH_SIZE,
    conn: Connection | None = None,
    client: rg.Argilla | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Push the selected rounds' rows that the dataset does not hold yet; `on_batch(done, total)` after each batch."""
    store = run if isinstance(run, RunStore) else RunStore.open(run, repair=False)
    if min_submitted is not None and min_submitted < 1:
        raise LabellingError("--min-submitted must be at least 1")
    batch_size = max(1, min(batch_size, MAX_BATCH))
    name = dataset or default_dataset(store)
    rows = select_rows(store, rounds)
    conn = conn or lc.resolve()
    t0 = time.monotonic()
    own_client = client is None
    client = client or lc.connect(conn)
    try:
        ds, ws_name, created, category_labels = open_dataset(client, conn, store, name, workspace, min_submitted)
        labels = set(category_labels)
        with_response = ds.settings.fields["response"] is not None
        with lc.errors(conn, f"listing the records of {name!r}"):
            have = existing_ids(ds, rounds) if rows and not created else set()
        todo = [r for r in rows if r["id"] not in have]
        without_label = 0
        done = 0
        t_upload = time.monotonic()
        for start in range(0, len(todo), batch_size):
            batch = [schema.record(r, labels, with_response=with_response) for r in todo[start : start + batch_size]]
            without_label += sum(1 for rec in batch if rec.fields.get("target") and not len(rec.suggestions))
            models = []
            for rec in batch:
                rec.dataset = ds  # resolves question names to ids for the suggestions
                models.append(rec.api_model())
            # The SDK's bulk upsert (what `records.log` calls) without `log`'s tqdm bar on stderr,
            # which would garble a run's live display; batches are ours so progress can be reported.
            with lc.errors(conn, f"sending records to {name!r}"):
                client.api.records.bulk_upsert(dataset_id=ds.id, records=models)
            done += len(batch)
            if on_batch:
                on_batch(done, len(todo))
        return PushResult(
            dataset=name,
            workspace=ws_name,
            url=conn.public_url,
            created=created,
            selected=len(rows),
            already=len(rows) - len(todo),
            pushed=done,
            without_label=without_label,
            seconds=time.monotonic() - t0,
            upload_seconds=time.monotonic() - t_upload,
        )
    finally:
        if own_client:
            lc.close(client)
