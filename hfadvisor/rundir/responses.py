"""The storage half of `hfadvisor respond`: answers to a run's rows, an append-only revision next to the rounds.

Layout (the run's own files are never touched)::

    responses/config.json          written once: target model, api, sampling, chat template
    responses/round-00007.parquet  answers to the rows of data round 7 (id, response, model, ...)
    responses/round-00007.json     its record (sha256 of both shards, counts); written last = commit point

Kept apart from `hfadvisor.respond` so the Hub, export and `load_run` read answers without the LLM client.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Value
from pydantic import BaseModel, ValidationError

from hfadvisor import __version__
from hfadvisor.config import Sampling
from hfadvisor.errors import RunStateError
from hfadvisor.ledger import Ledger
from hfadvisor.records import arrow_schema
from hfadvisor.rundir import paths
from hfadvisor.rundir.files import atomic_write, commit, parquet_bytes, sha256
from hfadvisor.rundir.store import RunStore

RESPONSE_FEATURES = Features(
    {
        "id": Value("string"),
        "round": Value("int32"),
        "response": Value("string"),
        "model": Value("string"),
        "finish_reason": Value("string"),
        "completion_tokens": Value("int32"),
    }
)
RESPONSE_SCHEMA = arrow_schema(RESPONSE_FEATURES)


class ResponseConfig(BaseModel):
    """What makes a set of responses what it is; resuming with anything else is refused."""

    model: str
    api: str
    sampling: Sampling
    chat_template: str  # "none", "server sha256:…", "file sha256:…" (tgi api) or "server-side" (chat api)
    seed: int = 0
    created_at: str = ""
    hfadvisor_version: str = __version__

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"created_at", "hfadvisor_version"})


class ResponseRecord(BaseModel):
    round: int
    shard: str
    rows: int
    sha256: str
    data_sha256: str | None  # the data shard these answers belong to
    completion_tokens: int
    finish_reasons: dict[str, int]
    seconds: float
    finished_at: str
    ledger: Ledger = Ledger()


def read_config(store: RunStore) -> ResponseConfig | None:
    """The stored `responses/config.json`, or None when the run has no responses.

    Raises:
        RunStateError: the file exists but is damaged.
    """
    path = store.path / paths.RESPONSES_CONFIG
    if not path.is_file():
        return None
    try:
        return ResponseConfig.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError):
        raise RunStateError(f"{path} is damaged: remove the {paths.RESPONSES}/ folder to answer again") from None


def write_config(store: RunStore, config: ResponseConfig) -> None:
    atomic_write(store.path / paths.RESPONSES_CONFIG, (config.model_dump_json(indent=1) + "\n").encode())


def committed(store: RunStore) -> dict[int, ResponseRecord]:
    """Records of the rounds whose answers are complete, verified and still match their data shard."""
    out: dict[int, ResponseRecord] = {}
    for entry in store.index:
        path = store.path / paths.response_record(entry.round)
        if not entry.shard or not path.is_file():
            continue
        try:
            rec = ResponseRecord.model_validate_json(path.read_bytes())
        except (ValidationError, ValueError):
            continue  # a torn record: the round is answered again
        shard = store.path / rec.shard
        if rec.data_sha256 != store.revision(entry.round).sha256:
            continue
        if not shard.is_file() or sha256(shard.read_bytes()) != rec.sha256:
            continue
        out[entry.round] = rec
    return out


def commit_round(store: RunStore, rows: list[dict[str, Any]], record: ResponseRecord) -> ResponseRecord:
    """Write the answers to data round `record.round`: the shard, then the record (the commit point).

    `record.shard` and `record.sha256` are filled in here.
    """
    data = parquet_bytes(rows, RESPONSE_SCHEMA)
    record = record.model_copy(update={"shard": paths.response_shard(record.round), "sha256": sha256(data)})
    commit(
        store.path,
        [(record.shard, data)],
        paths.response_record(record.round),
        record.model_dump_json(indent=1).encode(),
    )
    return record


def responses_table(store: RunStore, upto: int | None = None) -> pa.Table:
    """Every committed answer of rounds 0..upto (all rounds by default)."""
    recs = [r for k, r in sorted(committed(store).items()) if upto is None or k <= upto]
    tables = [pq.read_table(store.path / r.shard) for r in recs]
    return pa.concat_tables(tables).cast(RESPONSE_SCHEMA) if tables else RESPONSE_SCHEMA.empty_table()


def attach_responses(store: RunStore, table: pa.Table, features: Features) -> tuple[pa.Table, Features]:
    """Add a `response` column (null where a row has no answer yet) when the run has responses."""
    if read_config(store) is None:
        return table, features
    answers = responses_table(store)
    by_id = dict(zip(answers.column("id").to_pylist(), answers.column("response").to_pylist(), strict=True))
    column = pa.array([by_id.get(i) for i in table.column("id").to_pylist()], type=pa.string())
    features = Features({**features, "response": Value("string")})
    table = table.append_column("response", column)
    return table.cast(arrow_schema(features)), features
