"""The run directory is a dataset, written append-only, one revision per round.

Layout::

    run.json                   written once: run id, method config + hash, resolved preset
    data/round-00007.parquet   the round's accepted rows (the dataset)
    rejects/round-00007.parquet  the round's rejected generations, with reasons
    cards/round-00007.md       the dataset card as of round 7
    revisions/round-00007.json the manifest entry; its presence makes round 7 complete
    README.md                  the current card (a copy of the latest round's)
    sessions/session-00002.json  what each invocation spent and how it ended (failed rounds included)

A round is committed by writing its shards and card first, then its revision record
(temp file + fsync + rename). A crash at any point leaves either a complete round or
files with no revision, which the next open removes. Shards are verified against the
sha256 in their revision when a run is opened, so a torn or edited file is detected.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from hfadvisor.errors import RunStateError
from hfadvisor.records import (
    FORMAT_VERSION,
    REJECT_FEATURES,
    ROW_FEATURES,
    PoolEntry,
    Revision,
    RunInfo,
    Session,
    arrow_schema,
)

ROUND_RE = re.compile(r"^round-(\d{5,})\.(json|parquet|md)$")
SESSIONS_DIR = "sessions"
SESSION_RE = re.compile(r"^session-(\d{5,})\.json$")
_TEMP_RE = re.compile(r"^\..+\.tmp\d+$")
ROW_SCHEMA = arrow_schema(ROW_FEATURES)
REJECT_SCHEMA = arrow_schema(REJECT_FEATURES)
# fsync releases the GIL and the disk batches concurrent flushes: a round's shards and card
# are written side by side (3 writes took 19-30 ms one after another, 1.4-6 ms together).
_WRITERS = ThreadPoolExecutor(max_workers=3, thread_name_prefix="hfadvisor-store")


def round_name(r: int) -> str:
    return f"round-{r:05d}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename with fsync: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def is_temp(path: Path) -> bool:
    """A temp file `atomic_write` leaves when killed mid-write (`.NAME.tmpPID`): never user data."""
    return _TEMP_RE.match(path.name) is not None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


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
        )


class RunStore:
    """Reads and appends the rounds of one run directory."""

    def __init__(self, path: Path, info: RunInfo, index: list[RevisionIndex], last: Revision | None) -> None:
        self.path = path
        self.info = info
        self.index = index
        self.last = last

    # ------------------------------------------------------------------ open / create
    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / "run.json").is_file()

    @classmethod
    def create(cls, path: str | Path, info: RunInfo) -> RunStore:
        p = Path(path)
        if p.exists() and any(not is_temp(f) for f in p.iterdir()) and not cls.exists(p):
            raise RunStateError(f"{p} exists and is not an hfadvisor run: choose an empty or new --output directory")
        p.mkdir(parents=True, exist_ok=True)
        for f in filter(is_temp, p.iterdir()):  # an earlier start killed while writing run.json
            f.unlink(missing_ok=True)
        atomic_write(p / "run.json", (info.model_dump_json(indent=2) + "\n").encode())
        return cls(p, info, [], None)

    @classmethod
    def open(cls, path: str | Path, *, repair: bool = True, verify: bool = True) -> RunStore:
        """Open a run: load its revisions, verify shard hashes, drop leftovers of an unfinished round.

        With `repair`, files of rounds that never got their revision record are removed and
        rounds whose files fail verification are moved to `.corrupt/` (nothing is deleted
        that a revision vouches for).
        """
        p = Path(path)
        info_path = p / "run.json"
        if not info_path.is_file():
            raise RunStateError(f"{p} is not an hfadvisor run directory (no run.json)")
        try:
            raw = json.loads(info_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunStateError(f"{info_path} is not valid JSON: the run directory is damaged") from None
        fmt = raw.get("format") if isinstance(raw, dict) else None
        if fmt != FORMAT_VERSION:
            raise RunStateError(
                f"{p} was written in run format {fmt!r}; this hfadvisor reads format {FORMAT_VERSION}: "
                "use the hfadvisor version that created it"
            )
        try:
            info = RunInfo.model_validate(raw)
        except ValidationError as e:
            raise RunStateError(f"{info_path} is damaged: {e.errors()[0]['msg']}") from None

        revisions: list[Revision] = []
        bad: str | None = None
        for r, rev_path in enumerate(_sorted_round_files(p / "revisions", ".json")):
            if rev_path.name != f"{round_name(r)}.json":
                bad = f"revision {rev_path.name} out of sequence (expected {round_name(r)})"
                break
            try:
                rev = Revision.model_validate_json(rev_path.read_bytes())
            except (ValidationError, ValueError):
                bad = f"{rev_path.name} is unreadable"
                break
            if verify:
                problem = _verify(p, rev)
                if problem:
                    bad = problem
                    break
            revisions.append(rev)
        complete = len(revisions)
        if bad and not repair:
            raise RunStateError(f"{p}: {bad}")
        if repair:
            _remove_after(p, complete, quarantine=bad is not None)
            if revisions:
                _refresh_readme(p, revisions)
        index = [RevisionIndex.of(rev) for rev in revisions]
        return cls(p, info, index, revisions[-1] if revisions else None)

    # ------------------------------------------------------------------ reading
    @property
    def rounds_done(self) -> int:
        """Number of complete rounds, round 0 (the seeds) included."""
        return len(self.index)

    def revision(self, r: int) -> Revision:
        return Revision.model_validate_json((self.path / "revisions" / f"{round_name(r)}.json").read_bytes())

    def revisions(self) -> Iterator[Revision]:
        for r in range(self.rounds_done):
            yield self.revision(r)

    def pool(self) -> list[PoolEntry]:
        out: list[PoolEntry] = []
        for rev in self.revisions():
            out.extend(rev.pool_added)
        return out

    def table(self, upto: int | None = None, columns: list[str] | None = None) -> pa.Table:
        upto = self.rounds_done - 1 if upto is None else upto
        if upto < 0 or upto >= self.rounds_done:
            raise RunStateError(f"round {upto} does not exist: {self.path} has rounds 0..{self.rounds_done - 1}")
        tables = [
            pq.read_table(self.path / entry.shard, columns=columns) for entry in self.index[: upto + 1] if entry.shard
        ]
        schema = ROW_SCHEMA if columns is None else pa.schema([ROW_SCHEMA.field(c) for c in columns])
        return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()

    def rejects_table(self, upto: int | None = None) -> pa.Table:
        upto = self.rounds_done - 1 if upto is None else upto
        tables = [pq.read_table(self.path / e.rejects_shard) for e in self.index[: upto + 1] if e.rejects_shard]
        return pa.concat_tables(tables) if tables else REJECT_SCHEMA.empty_table()

    def iter_prompts(self) -> Iterable[str]:
        for entry in self.index:
            if entry.shard:
                yield from pq.read_table(self.path / entry.shard, columns=["prompt"]).column("prompt").to_pylist()

    # ------------------------------------------------------------------ writing
    def commit_round(
        self, rev: Revision, rows: list[dict[str, Any]], rejects: list[dict[str, Any]], card: str
    ) -> Revision:
        """Write one round: shards and card first, the revision record last (the commit point).

        Empty shards are not written (`datasets` cannot read a zero-row Parquet file); the
        revision then records `None` for that shard.
        """
        r = rev.round
        if r != self.rounds_done:
            raise RunStateError(f"round {r} cannot follow round {self.rounds_done - 1}")
        t0 = time.monotonic()
        name = round_name(r)
        data = parquet_bytes(rows, ROW_SCHEMA) if rows else None
        rej = parquet_bytes(rejects, REJECT_SCHEMA) if rejects else None
        rev = rev.model_copy(
            update={
                "shard": f"data/{name}.parquet" if data else None,
                "rows": len(rows),
                "sha256": sha256(data) if data else None,
                "rejects_shard": f"rejects/{name}.parquet" if rej else None,
                "rejects": len(rejects),
                "rejects_sha256": sha256(rej) if rej else None,
                "card": f"cards/{name}.md",
            }
        )
        writes = [(rev.card, card.encode())]
        if data and rev.shard:
            writes.append((rev.shard, data))
        if rej and rev.rejects_shard:
            writes.append((rev.rejects_shard, rej))
        _write_all(self.path, writes)
        rev.timings.write = round(time.monotonic() - t0, 4)
        atomic_write(self.path / "revisions" / f"{name}.json", rev.model_dump_json(indent=1).encode())
        atomic_write(self.path / "README.md", card.encode())
        self.index.append(RevisionIndex.of(rev))
        self.last = rev
        return rev


def record_session(root: Path, session: Session) -> Path:
    """Write a session record next to the rounds (never part of any round; not pushed)."""
    d = root / SESSIONS_DIR
    d.mkdir(exist_ok=True)
    n = 1 + max((int(m.group(1)) for f in d.iterdir() if (m := SESSION_RE.match(f.name))), default=0)
    path = d / f"session-{n:05d}.json"
    atomic_write(path, (session.model_dump_json(indent=1) + "\n").encode())
    return path


def sessions(root: Path) -> list[Session]:
    d = root / SESSIONS_DIR
    if not d.is_dir():
        return []
    out = []
    for f in sorted(d.iterdir()):
        if SESSION_RE.match(f.name):
            with contextlib.suppress(ValueError, OSError):
                out.append(Session.model_validate_json(f.read_bytes()))
    return out


def _refresh_readme(root: Path, revisions: list[Revision]) -> None:
    """README.md is copied from the last round's card after its revision record: a kill in
    between leaves it missing or equal to the previous round's card. Bring it up to date
    (a README that differs from both, e.g. with label statistics added, is left alone)."""
    readme, last = root / "README.md", root / revisions[-1].card
    if not last.is_file():
        return
    if readme.is_file():
        if len(revisions) < 2:
            return
        previous = root / revisions[-2].card
        current = readme.read_bytes()
        if not previous.is_file() or current != previous.read_bytes() or current == last.read_bytes():
            return
    atomic_write(readme, last.read_bytes())


def _write_all(root: Path, files: list[tuple[str, bytes]]) -> None:
    """`atomic_write` every file, concurrently; returns once all are durable (or raises the first error)."""
    futures = [_WRITERS.submit(atomic_write, root / rel, data) for rel, data in files]
    wait(futures)
    for f in futures:
        f.result()


def _sorted_round_files(directory: Path, suffix: str) -> list[Path]:
    if not directory.is_dir():
        return []
    files = [f for f in directory.iterdir() if f.suffix == suffix and ROUND_RE.match(f.name)]
    return sorted(files, key=lambda f: int(ROUND_RE.match(f.name).group(1)))  # type: ignore[union-attr]


def _verify(root: Path, rev: Revision) -> str | None:
    for rel, digest in ((rev.shard, rev.sha256), (rev.rejects_shard, rev.rejects_sha256)):
        if rel is None:
            continue
        f = root / rel
        if not f.is_file():
            return f"{rel} is missing"
        if sha256(f.read_bytes()) != digest:
            return f"{rel} does not match its recorded sha256 (torn or edited file)"
    return None


def _remove_after(root: Path, complete: int, *, quarantine: bool) -> None:
    """Remove (or quarantine) files of rounds >= complete, and temp files of interrupted writes."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for sub, suffix in (("revisions", ".json"), ("data", ".parquet"), ("rejects", ".parquet"), ("cards", ".md")):
        d = root / sub
        if not d.is_dir():
            continue
        for f in d.iterdir():
            if f.name.startswith(".") and ".tmp" in f.name:
                f.unlink(missing_ok=True)
                continue
            m = ROUND_RE.match(f.name)
            if not m or f.suffix != suffix or int(m.group(1)) < complete:
                continue
            if quarantine:
                dest = root / ".corrupt" / stamp / sub
                dest.mkdir(parents=True, exist_ok=True)
                shutil.move(str(f), dest / f.name)
            else:
                f.unlink()
    for f in root.glob(".*.tmp*"):
        f.unlink(missing_ok=True)
