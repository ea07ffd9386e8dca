"""Human labels pulled from Argilla, stored in the run as versions (`labels/pull-NNNNN.*`).

Each version is a shard with every submitted response known at that moment (one row per
record and annotator) and a manifest written last, the commit point. Writing exactly the
labels of the previous version writes nothing. Reading needs neither argilla nor the LLM client.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, List, Value
from pydantic import BaseModel, ValidationError

from hfadvisor import __version__
from hfadvisor.records import arrow_schema
from hfadvisor.rundir import paths
from hfadvisor.rundir.files import commit, parquet_bytes, sha256
from hfadvisor.rundir.store import RunStore

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


def pulls(run_dir: Path) -> list[int]:
    """The numbers of the run's labels versions (complete or not), in order."""
    d = run_dir / paths.LABELS
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for f in d.iterdir() if (m := paths.PULL_RE.match(f.name)))


def latest(run_dir: str | Path) -> Labels | None:
    """The newest complete and intact labels version of a run, or None."""
    root = Path(run_dir)
    for n in reversed(pulls(root)):
        try:
            manifest = LabelsManifest.model_validate_json((root / paths.labels_manifest(n)).read_bytes())
            data = (root / manifest.shard).read_bytes()
        except (OSError, ValidationError, ValueError):
            continue
        if sha256(data) != manifest.sha256:
            continue
        rows = pq.read_table(pa.BufferReader(data)).to_pylist()
        return Labels(manifest, rows)
    return None


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
    data = parquet_bytes(rows, LABEL_SCHEMA)
    shard = paths.labels_shard(n)
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
    commit(store.path, [(shard, data)], paths.labels_manifest(n), (manifest.model_dump_json(indent=1) + "\n").encode())
    return manifest, True
