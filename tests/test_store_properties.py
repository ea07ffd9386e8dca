"""Property-based tests of the round store: whatever the crash point, a reopened run holds
exactly the rounds whose revision record was written, each intact, and nothing else."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfadvisor.api import plan_run, seed_round
from hfadvisor.records import Revision
from hfadvisor.rundir.store import REJECT_SCHEMA, ROW_SCHEMA, RunStore, atomic_write, parquet_bytes, round_name

CRASH_POINTS = ["none", "after_data", "after_rejects", "after_card", "temp_revision", "torn_revision"]


def _rows(r: int, n: int) -> list[dict]:
    return [
        {
            "id": f"r{r}-{i}",
            "round": r,
            "slot": i,
            "prompt": f"prompt {r} {i}",
            "weakness": "w",
            "source": "advisor",
            "model": "m",
            "exemplar_ids": [],
        }
        for i in range(n)
    ]


def _rejects(r: int, n: int) -> list[dict]:
    return [
        {
            "id": f"x{r}-{i}",
            "round": r,
            "slot": 100 + i,
            "stage": "generate",
            "reason": "too_short",
            "text": "t",
            "raw": "t",
            "weakness": "w",
            "model": "m",
        }
        for i in range(n)
    ]


def _revision(store: RunStore, r: int) -> Revision:
    return store.last.model_copy(update={"round": r, "weakness": f"w{r}"})


def _crash_round(root: Path, r: int, rows: int, rejects: int, point: str) -> None:
    """Leave what an interrupted commit of round r would leave on disk."""
    name = round_name(r)
    if point == "none":
        return
    if rows:
        atomic_write(root / "data" / f"{name}.parquet", parquet_bytes(_rows(r, rows), ROW_SCHEMA))
    if point == "after_data":
        return
    if rejects:
        atomic_write(root / "rejects" / f"{name}.parquet", parquet_bytes(_rejects(r, rejects), REJECT_SCHEMA))
    if point == "after_rejects":
        return
    atomic_write(root / "cards" / f"{name}.md", b"card")
    if point == "after_card":
        return
    if point == "temp_revision":
        (root / "revisions" / f".{name}.json.tmp999").write_text('{"round": ')
    if point == "torn_revision":  # not possible with rename, but a copied/edited dir could have it
        (root / "revisions" / f"{name}.json").write_text('{"round": ')


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=0, max_size=5),
    crash=st.sampled_from(CRASH_POINTS),
    crash_rows=st.integers(0, 4),
    crash_rejects=st.integers(0, 3),
    reopen_twice=st.booleans(),
)
def test_reopen_after_any_crash_point(sizes, crash, crash_rows, crash_rejects, reopen_twice):
    tmp = Path(tempfile.mkdtemp())
    try:
        root = tmp / "run"
        store = seed_round(plan_run(root, endpoints=["http://127.0.0.1:9"], rounds=10))
        for r, (n_rows, n_rej) in enumerate(sizes, start=1):
            store.commit_round(_revision(store, r), _rows(r, n_rows), _rejects(r, n_rej), "card\n")
        committed = len(sizes) + 1
        _crash_round(root, committed, crash_rows, crash_rejects, crash)

        reopened = RunStore.open(root)
        if reopen_twice:
            reopened = RunStore.open(root)
        assert reopened.rounds_done == committed
        assert [rev.round for rev in reopened.revisions()] == list(range(committed))
        table = reopened.table()
        assert table.num_rows == 10 + sum(n for n, _ in sizes)
        assert reopened.rejects_table().num_rows == sum(k for _, k in sizes)
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids))
        leftovers = [p for p in root.rglob(f"*{round_name(committed)}*") if ".corrupt" not in p.parts]
        assert leftovers == []
        assert not list(root.rglob(".*.tmp*"))
        # the run continues: the next commit lands as round `committed`
        nxt = reopened.commit_round(_revision(reopened, committed), _rows(committed, 1), [], "card\n")
        assert nxt.round == committed and RunStore.open(root, repair=False).rounds_done == committed + 1
    finally:
        shutil.rmtree(tmp)
