"""The run directory is a dataset, written append-only, one revision per round (layout: `paths`).

A round is committed by writing its shards and card first, then its revision record
(`files.commit`). A crash at any point leaves either a complete round or files with no
revision, which the next open removes. Shards are verified against the sha256 in their
revision when a run is opened, so a torn or edited file is detected.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterable, Iterator
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
    RevisionIndex,
    RunInfo,
    Session,
    arrow_schema,
)
from hfadvisor.rundir import paths
from hfadvisor.rundir.files import atomic_write, commit, is_temp, parquet_bytes, sha256
from hfadvisor.rundir.paths import ROUND_RE, SESSION_RE, round_name

ROW_SCHEMA = arrow_schema(ROW_FEATURES)
# runs made before lanes (no `lanes` in their method) keep writing shards without the `lane` column
LEGACY_ROW_SCHEMA = arrow_schema(type(ROW_FEATURES)({k: v for k, v in ROW_FEATURES.items() if k != "lane"}))
REJECT_SCHEMA = arrow_schema(REJECT_FEATURES)


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
        return (Path(path) / paths.RUN_JSON).is_file()

    @classmethod
    def create(cls, path: str | Path, info: RunInfo) -> RunStore:
        p = Path(path)
        if p.exists() and any(not is_temp(f) for f in p.iterdir()) and not cls.exists(p):
            raise RunStateError(f"{p} exists and is not an hfadvisor run: choose an empty or new --output directory")
        p.mkdir(parents=True, exist_ok=True)
        for f in filter(is_temp, p.iterdir()):  # an earlier start killed while writing run.json
            f.unlink(missing_ok=True)
        atomic_write(p / paths.RUN_JSON, (info.model_dump_json(indent=2) + "\n").encode())
        return cls(p, info, [], None)

    @classmethod
    def open(cls, path: str | Path, *, repair: bool = True, verify: bool = True) -> RunStore:
        """Open a run: load its revisions, verify shard hashes, drop leftovers of an unfinished round.

        With `repair`, files of rounds that never got their revision record are removed and
        rounds whose files fail verification are moved to `.corrupt/` (nothing is deleted
        that a revision vouches for).
        """
        p = Path(path)
        info_path = p / paths.RUN_JSON
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
        for r, rev_path in enumerate(_sorted_round_files(p / paths.REVISIONS, ".json")):
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
        return Revision.model_validate_json((self.path / paths.revision(r)).read_bytes())

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
        legacy = self._row_schema is LEGACY_ROW_SCHEMA
        read = [c for c in columns if not (legacy and c == "lane")] if columns is not None else None
        tables = [
            pq.read_table(self.path / entry.shard, columns=read) for entry in self.index[: upto + 1] if entry.shard
        ]
        schema = ROW_SCHEMA if columns is None else pa.schema([ROW_SCHEMA.field(c) for c in columns])
        if not tables:
            return schema.empty_table()
        table = pa.concat_tables(tables)
        if "lane" in schema.names and "lane" not in table.column_names:  # an old run: no row has a lane
            table = table.append_column("lane", pa.nulls(table.num_rows, pa.int32()))
        return table.select(schema.names).cast(schema)

    @property
    def _row_schema(self) -> pa.Schema:
        return ROW_SCHEMA if "lanes" in self.info.method else LEGACY_ROW_SCHEMA

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
        data = parquet_bytes(rows, self._row_schema) if rows else None
        rej = parquet_bytes(rejects, REJECT_SCHEMA) if rejects else None
        rev = rev.model_copy(
            update={
                "shard": paths.data_shard(r) if data else None,
                "rows": len(rows),
                "sha256": sha256(data) if data else None,
                "rejects_shard": paths.rejects_shard(r) if rej else None,
                "rejects": len(rejects),
                "rejects_sha256": sha256(rej) if rej else None,
                "card": paths.card(r),
            }
        )
        writes = [(rev.card, card.encode())]
        if data and rev.shard:
            writes.append((rev.shard, data))
        if rej and rev.rejects_shard:
            writes.append((rev.rejects_shard, rej))

        def record() -> bytes:
            rev.timings.write = round(time.monotonic() - t0, 4)
            return rev.model_dump_json(indent=1).encode()

        commit(self.path, writes, paths.revision(r), record)
        atomic_write(self.path / paths.README, card.encode())
        self.index.append(RevisionIndex.of(rev))
        self.last = rev
        return rev


def record_session(root: Path, session: Session) -> Path:
    """Write a session record next to the rounds (never part of any round; not pushed)."""
    d = root / paths.SESSIONS
    d.mkdir(exist_ok=True)
    n = 1 + max((int(m.group(1)) for f in d.iterdir() if (m := SESSION_RE.match(f.name))), default=0)
    path = root / paths.session(n)
    atomic_write(path, (session.model_dump_json(indent=1) + "\n").encode())
    return path


def sessions(root: Path) -> list[Session]:
    d = root / paths.SESSIONS
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
    readme, last = root / paths.README, root / revisions[-1].card
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
    for sub, suffix in paths.ROUND_DIRS:
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
                dest = root / paths.CORRUPT / stamp / sub
                dest.mkdir(parents=True, exist_ok=True)
                shutil.move(str(f), dest / f.name)
            else:
                f.unlink()
    for f in root.glob(".*.tmp*"):
        f.unlink(missing_ok=True)
