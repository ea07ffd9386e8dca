"""The test's own record of a run directory: what is committed, read from disk without hfadvisor.

A fault counts as survived only when what was committed before it is still there afterwards. The
record is taken from outside the product (json, hashlib and pyarrow on the files), so a bug in
hfadvisor's reader or repair cannot make a lost round look kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq


@dataclass(frozen=True)
class Round:
    revision_sha256: str  # of revisions/round-NNNNN.json, the commit point
    shard_sha256: str | None  # of the data shard it names (None: the round kept no row)
    ids: tuple[str, ...]  # row ids in the shard, read with pyarrow
    prompts: tuple[str, ...]  # and their prompts


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def committed(run: Path) -> dict[int, Round]:
    """Every round whose revision record is on disk and whose shard matches the sha256 it names."""
    out: dict[int, Round] = {}
    try:
        names = sorted(os.listdir(run / "revisions"))
    except FileNotFoundError:
        return out
    for name in names:
        if not (name.startswith("round-") and name.endswith(".json")):
            continue
        path = run / "revisions" / name
        try:
            rec = json.loads(path.read_bytes())
        except ValueError:
            continue  # a torn record is not a commit
        shard = rec.get("shard")
        if shard and (not (run / shard).is_file() or _sha(run / shard) != rec.get("sha256")):
            continue
        table = pq.read_table(run / shard, columns=["id", "prompt"]) if shard else None
        ids = tuple(table.column("id").to_pylist()) if table is not None else ()
        prompts = tuple(table.column("prompt").to_pylist()) if table is not None else ()
        out[int(rec["round"])] = Round(_sha(path), _sha(run / shard) if shard else None, ids, prompts)
    return out


def check(run: Path, before: dict[int, Round]) -> tuple[list[str], int]:
    """Compare the run now with a record taken earlier: (problems, rows lost).

    Every round committed before must still be committed byte for byte; rows lost are the row ids
    of those rounds that are in no committed shard now; no row id may appear twice.
    """
    now = committed(run)
    problems = [f"round {r} changed or vanished" for r, rnd in before.items() if now.get(r) != rnd]
    ids = [i for rnd in now.values() for i in rnd.ids]
    present = set(ids)
    lost = sum(1 for rnd in before.values() for i in rnd.ids if i not in present)
    if len(ids) != len(present):
        problems.append(f"{len(ids) - len(present)} duplicated row ids")
    prompts = [p for rnd in now.values() for p in rnd.prompts]
    if len(prompts) != len(set(prompts)):
        problems.append(f"{len(prompts) - len(set(prompts))} rows written twice")
    if sorted(now) != list(range(len(now))):
        problems.append(f"committed rounds are not 0..n: {sorted(now)}")
    return problems, lost
