"""Bring submitted Argilla responses back into the run as a versioned labels table.

Each pull that finds something new writes a labels version (`hfadvisor.rundir.labels`: a
shard, then its manifest, the commit point). A pull that finds exactly the labels of the
previous one writes nothing. The rounds themselves are never rewritten (the store is append-only); only ``README.md``, the
current card, is re-rendered with the label statistics.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfadvisor import card
from hfadvisor.errors import LabellingError
from hfadvisor.labelling import client as lc
from hfadvisor.labelling import schema, stats
from hfadvisor.labelling.client import Connection
from hfadvisor.labelling.push import default_dataset
from hfadvisor.ledger import Ledger
from hfadvisor.records import CardSection
from hfadvisor.rundir import paths
from hfadvisor.rundir.files import atomic_write
from hfadvisor.rundir.labels import Labels, latest, write

if TYPE_CHECKING:
    import argilla as rg

    from hfadvisor.rundir.store import RunStore


@dataclass
class PullResult:
    dataset: str
    workspace: str
    pull: int  # 0: nothing submitted yet and no earlier pull (nothing written)
    new: bool  # False: nothing changed since the previous pull, nothing written
    responses: int
    records: int
    annotators: int
    foreign: int
    seconds: float
    path: Path


def _username(users: dict[str, str], user_id: Any) -> str:
    return users.get(str(user_id), str(user_id))


def fetch(
    client: rg.Argilla, conn: Connection, dataset: rg.Dataset, rows_by_id: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Submitted responses as label rows (drafts and discards are not labels yet); + foreign record count."""
    from argilla._exceptions import ForbiddenError

    users: dict[str, str] = {}
    with contextlib.suppress(ForbiddenError):  # admins may not list users: keep ids
        users = {str(u.id): str(u.username) for u in client.users}
    out: list[dict[str, Any]] = []
    foreign = 0
    with lc.errors(conn, f"reading the responses of {dataset.name!r}"):
        for record in dataset.records(with_responses=True, with_suggestions=False, batch_size=500):
            by_user: dict[str, dict[str, Any]] = {}
            for response in record.responses:
                status = getattr(response.status, "value", response.status)
                if status != "submitted":
                    continue
                by_user.setdefault(str(response.user_id), {})[response.question_name] = response.value
            if not by_user:
                continue
            row = rows_by_id.get(str(record.id))
            if row is None:
                foreign += 1
                continue
            for user_id, values in by_user.items():
                quality = values.get("quality")
                out.append(
                    {
                        "id": row["id"],
                        "round": row["round"],
                        "weakness": row["weakness"],
                        "source": row["source"],
                        "annotator": _username(users, user_id),
                        "harmful": values.get("harmful"),
                        "categories": list(values.get("category") or []),
                        "on_target": values.get("on_target"),
                        "quality": int(quality) if quality is not None else None,
                        "note": values.get("note"),
                    }
                )
    out.sort(key=lambda r: (r["round"], r["id"], r["annotator"]))
    return out, foreign


def sections_for(labels: Labels) -> list[CardSection]:
    m = labels.manifest
    return stats.card_sections(
        labels.rows, pull=m.pull, dataset=m.dataset, workspace=m.workspace, pulled_at=m.pulled_at
    )


def refresh_card(store: RunStore, labels: Labels, template: Path | None = None) -> None:
    """Re-render README.md (the current card) with the latest label statistics; round cards stay as written."""
    last = store.last
    if last is None:
        return
    own = (stats.SECTION_PREFIX, stats.FEEDBACK_TITLE)
    rev = last.model_copy(update={"sections": [s for s in last.sections if not s.title.startswith(own)]})
    ledger = Ledger()
    for r in store.revisions():
        ledger = ledger.plus(r.ledger)
    text = card.render(
        store.info,
        rev,
        store.index,
        rounds_planned=last.rounds_planned or store.rounds_done - 1,
        ledger_total=ledger,
        template=template,
        extra_sections=sections_for(labels),
    )
    atomic_write(store.path / paths.README, text.encode())


def pull(
    run: str | Path | RunStore,
    *,
    dataset: str | None = None,
    workspace: str | None = None,
    conn: Connection | None = None,
    client: rg.Argilla | None = None,
    card_template: Path | None = None,
) -> PullResult:
    """Fetch submitted responses, store them as the run's next labels version, refresh the card."""
    from hfadvisor.rundir.store import RunStore

    store = run if isinstance(run, RunStore) else RunStore.open(run, repair=False)
    name = dataset or default_dataset(store)
    conn = conn or lc.resolve()
    own_client = client is None
    client = client or lc.connect(conn)
    try:
        t0 = time.monotonic()
        ws = lc.workspace(client, conn, workspace)
        ds = lc.find_dataset(client, conn, ws, name)
        if ds is None:
            raise LabellingError(
                f"no Argilla dataset {name!r} in workspace {ws.name!r}: push rows first with "
                f"`hfadvisor label push {store.path} --dataset {name}`"
            )
        categories = schema.check(ds, str(ws.name))
        run_rows = store.table(columns=["id", "round", "weakness", "source"]).to_pylist()
        rows, foreign = fetch(client, conn, ds, {r["id"]: r for r in run_rows})
        if not rows and latest(store.path) is None:  # nothing submitted yet: no labels version, card as it was
            return PullResult(
                dataset=name,
                workspace=str(ws.name),
                pull=0,
                new=False,
                responses=0,
                records=0,
                annotators=0,
                foreign=foreign,
                seconds=time.monotonic() - t0,
                path=store.path / paths.LABELS,
            )
        manifest, new = write(
            store,
            rows,
            dataset=name,
            workspace=str(ws.name),
            server=conn.public_url,
            rows_in_run=len(run_rows),
            rounds_in_run=store.rounds_done,
            foreign_records=foreign,
            categories=categories,
        )
        labels = Labels(manifest, rows)
        refresh_card(store, labels, card_template)
        return PullResult(
            dataset=name,
            workspace=str(ws.name),
            pull=manifest.pull,
            new=new,
            responses=len(rows),
            records=manifest.records_labelled,
            annotators=len(manifest.annotators),
            foreign=foreign,
            seconds=time.monotonic() - t0,
            path=store.path / manifest.shard,
        )
    finally:
        if own_client:
            lc.close(client)
