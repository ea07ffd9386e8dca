"""Typed records of a run: rows, rejects, pool entries and the per-round revision record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from datasets import Features, List, Value
from pydantic import BaseModel, Field

from hfadvisor.ledger import Ledger

FORMAT_VERSION = 1

ROW_FEATURES = Features(
    {
        "id": Value("string"),
        "round": Value("int32"),
        "slot": Value("int32"),
        "prompt": Value("string"),
        "weakness": Value("string"),  # the category the row was written for (seed rows: their category)
        "source": Value("string"),  # seed | advisor | baseline
        "model": Value("string"),
        "exemplar_ids": List(Value("string")),
        "lane": Value("int32"),  # which of the round's weaknesses (advisor rows); null for seeds, baseline, old runs
    }
)

REJECT_FEATURES = Features(
    {
        "id": Value("string"),
        "round": Value("int32"),
        "slot": Value("int32"),
        "stage": Value("string"),
        "reason": Value("string"),
        "text": Value("string"),
        "raw": Value("string"),
        "weakness": Value("string"),
        "model": Value("string"),
    }
)


def features(**columns: str) -> Features:
    """Flat `Features` from column=dtype pairs, in the order given (e.g. `features(id="string")`)."""
    return Features({name: Value(dtype) for name, dtype in columns.items()})


def arrow_schema(features: Features) -> pa.Schema:
    """Arrow schema carrying the `datasets` features, so every loader restores exact types."""
    import json

    meta = {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}
    return features.arrow_schema.with_metadata(meta)


class PoolEntry(BaseModel):
    id: str
    prompt: str
    category: str | None = None

    def example(self) -> dict[str, str]:
        return {"prompt": self.prompt, "category": self.category or ""}


class Timings(BaseModel):
    weakness: float = 0.0
    generate: float = 0.0
    summarize: float = 0.0
    write: float = 0.0
    total: float = 0.0


class CardSection(BaseModel):
    """A block of Markdown a plugin adds to a round's card (model text already escaped)."""

    title: str
    markdown: str


class Revision(BaseModel):
    """What one round wrote: the manifest entry that makes the round complete."""

    format: int = FORMAT_VERSION
    round: int
    mode: str
    shard: str | None = Field(description="data shard; None when the round accepted no rows")
    rows: int
    sha256: str | None
    rejects_shard: str | None = Field(description="rejects shard; None when nothing was rejected")
    rejects: int
    rejects_sha256: str | None
    reject_reasons: dict[str, int] = Field(default_factory=dict)
    card: str
    summary_before: list[str]
    summary_after: list[str]
    summary_source: str = "seed"  # seed | model | fallback | unchanged
    summary_note: str = ""
    summary_added: list[str] = Field(default_factory=list)  # new lines covering no old line
    summary_merged: dict[str, str] = Field(default_factory=dict)  # old line -> the new line covering it
    summary_dropped: list[str] = Field(default_factory=list)  # lost by the model's answer (the fallback kept them)
    weakness: str | None = None  # the first lane's (all of them: `weaknesses`)
    weaknesses: list[str] = Field(default_factory=list)  # one per lane (--lanes); empty in runs before lanes
    weakness_attempts: int = 0
    weakness_prompt: str | None = None  # only when plugins (human labels) added feedback to the preset's prompt
    summary_sees_examples: bool | None = None
    pool_added: list[PoolEntry] = Field(default_factory=list)
    pool_size: int
    rounds_planned: int | None = None
    config_hash: str
    model: str
    endpoints: list[str] = Field(default_factory=list)
    api: str | None = None
    started_at: str
    finished_at: str
    timings: Timings = Timings()
    ledger: Ledger = Ledger()
    sections: list[CardSection] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def targeted(self) -> str | None:
        """What the round aimed at, for people: its weakness, or all K of them (--lanes), in lane order."""
        return "; ".join(self.weaknesses) if len(self.weaknesses) > 1 else self.weakness


@dataclass
class RevisionIndex:
    """The light part of a revision kept in memory for every round (history, totals)."""

    round: int
    rows: int
    rejects: int
    weakness: str | None
    summary_source: str
    summary_lines: int
    shard: str | None
    rejects_shard: str | None
    targeted: str | None = None  # `Revision.targeted`: every lane's weakness

    @classmethod
    def of(cls, rev: Revision) -> RevisionIndex:
        return cls(
            rev.round,
            rev.rows,
            rev.rejects,
            rev.weakness,
            rev.summary_source,
            len(rev.summary_after),
            rev.shard,
            rev.rejects_shard,
            rev.targeted,
        )


class Session(BaseModel):
    """`sessions/session-NNNNN.json`: one `hfadvisor run`/`baseline` invocation that ran rounds.

    Round revisions hold the ledger of complete rounds only; this keeps what a session spent
    in total, including the calls of a round that failed or was interrupted, and how it ended.
    """

    started_at: str
    finished_at: str
    outcome: str  # completed | stopped (a user-facing error) | interrupted | failed (a bug)
    message: str = ""
    rounds_committed: list[int] = Field(default_factory=list)
    model: str
    endpoints: list[str] = Field(default_factory=list)
    hfadvisor_version: str
    ledger: Ledger = Ledger()


class RunInfo(BaseModel):
    """`run.json`: written once when the run is created."""

    format: int = FORMAT_VERSION
    run_id: str
    created_at: str
    hfadvisor_version: str
    mode: str
    config_hash: str
    method: dict[str, Any]
    preset: dict[str, Any]
