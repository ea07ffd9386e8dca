"""Bring submitted Argilla responses back into the run as a versioned labels table.

Each pull that finds something new writes ``labels/pull-NNNNN.parquet`` (every submitted
response known at that moment, one row per record and annotator) and then
``labels/pull-NNNNN.json`` — the manifest, written last, is the commit point, like a round's
revision record. A pull that finds exactly the labels of the previous one writes nothing. The
rounds themselves are never rewritten (the store is append-only); only ``README.md``, the
current card, is re-rendered with the label statistics.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, List, Value
from pydantic import BaseModel, ValidationError

from hfadvisor import __version__, card
from hfadvisor.labelling import client as lc
from hfadvisor.labelling import schema, stats
from hfadvisor.labelling.client import Connection, LabellingError
from hfadvisor.labelling.push import default_dataset
from hfadvisor.llm.ledger import Ledger
from hfadvisor.records import CardSection, arrow_schema
from hfadvisor.rundir.store import atomic_write, parquet_bytes, sha256

if TYPE_CHECKING:
    import argilla as rg

    from hfadvisor.rundir.store import RunStore

LABELS_DIR = "labels"
PULL_RE = re.compile(r"^pull-(\d{5,})\.json$")
LABEL_FEATURES = Features(
    {
        "id": Value("string"),  # the row id (= the Argilla record id)
        "round": Value("int32"),
        "weakness": Value("string"),  # the category the row was generated for
        "source": Value("string"),
        "annotator": Value("string"),  # Argilla username (user id when the key may not list users)
        "harmful": Value("string"),  # yes | no | unsure
        "categories": List(Value("string")),
        "on_target": Value("string"),  # yes | no | None
        "quality": Value("int32"),
        "note": Value("string"),
    }
)
LABEL_SCHEMA = arrow_schema(LABEL_FEATURES)


class LabelsManifest(BaseModel):
    """`labels/pull-NNNNN.json`: one labels version. Holds no secret (the server URL is stripped)."""

    format: int = 1
    pull: int
    shard: str
    sha256: str
    content_sha256: str
    dataset: str
    workspace: str
    server: str
    pulled_at: str
    hfadvisor_version: str
    rows_in_run: int
    rounds_in_run: int
    records_labelled: int
    responses: int
    annotators: list[str]
    foreign_records: int  # labelled records whose id is not a row of this run (ignored)
    categories: list[str]


@dataclass
class Labels:
    manifest: LabelsManifest
    rows: list[dict[str, Any]]


@dataclass
class PullResult:
    dataset: str
    workspace: str
    pull: int
    new: bool  # False: nothing changed since the previous pull, nothing written
    responses: int
    records: int
    annotators: int
    foreign: int
    seconds: float
    path: Path


def pull_name(n: int) -> str:
    return f"pull-{n:05d}"


def pulls(run_dir: Path) -> list[int]:
    d = run_dir / LABELS_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for f in d.iterdir() if (m := PULL_RE.match(f.name)))


def latest(run_dir: str | Path) -> Labels | None:
    """The newest complete and intact labels version of a run, or None."""
    root = Path(run_dir)
    for n in reversed(pulls(root)):
        try:
            manifest = LabelsManifest.model_validate_json((root / LABELS_DIR / f"{pull_name(n)}.json").read_bytes())
            data = (root / manifest.shard).read_bytes()
        except (OSError, ValidationError, ValueError):
            continue
        if sha256(data) != manifest.sha256:
            continue
        rows = pq.read_table(pa.BufferReader(data)).to_pylist()
        return Labels(manifest, rows)
    return None


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


def _content_digest(rows: list[dict[str, Any]]) -> str:
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def write(store: RunStore, rows: list[dict[str, Any]], **info: Any) -> tuple[LabelsManifest, bool]:
    """Store a labels version (shard first, manifest last); (manifest, False) when unchanged."""
    digest = _content_digest(rows)
    previous = latest(store.path)
    if previous and previous.manifest.content_sha256 == digest:
        return previous.manifest, False
    n = (pulls(store.path) or [0])[-1] + 1
    name = pull_name(n)
    data = parquet_bytes(rows, LABEL_SCHEMA)
    shard = f"{LABELS_DIR}/{name}.parquet"
    manifest = LabelsManifest(
        pull=n,
        shard=shard,
        sha256=sha256(data),
        content_sha256=digest,
        pulled_at=datetime.now(UTC).isoformat(timespec="seconds"),
        hfadvisor_version=__version__,
        records_labelled=len({r["id"] for r in rows}),
        responses=len(rows),
        annotators=sorted({r["annotator"] for r in rows}),
        **info,
    )
    atomic_write(store.path / shard, data)
    atomic_write(store.path / LABELS_DIR / f"{name}.json", (manifest.model_dump_json(indent=1) + "\n").encode())
    return manifest, True


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
    atomic_write(store.path / "README.md", text.encode())


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
