"""Property-based (hypothesis, stateful) tests of the manifest/resume logic.

tests/test_store_properties.py checks one crash after a run of commits. Here hypothesis drives
whole histories: commits, crashes at any point of a commit (files written, temp files left, a
torn record), bit rot in any committed shard, reopen (the repair a resumed session performs),
commits after repairs, in any order and number. A model of what must survive is kept alongside:
the store always holds exactly the rounds the model says, each byte-identical, ids unique, and
the Hub's per-round commit trailers parse back to the same run, round and digest.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hfadvisor.api import plan_run, seed_round
from hfadvisor.hub.publish import parse_trailers, trailers
from hfadvisor.rundir.store import ROW_SCHEMA, RunStore, atomic_write, parquet_bytes, round_name, sha256

GROUP = "Manifest/resume properties"
UNITS = (
    "one hypothesis history (commits, simulated crashes, bit rot, reopens)",
    "one crash leftover or bit flip written by the test, then reopened and compared with the model",
)
pytestmark = pytest.mark.reliability

COUNTS = {"histories": 0, "steps": 0, "crashes": 0, "corruptions": 0, "survived": 0}


def rows(r: int, n: int, salt: int) -> list[dict]:
    return [
        {
            "id": f"r{r}-{i}",
            "round": r,
            "slot": i,
            "prompt": f"prompt {r} {i} {salt}",
            "weakness": "w",
            "source": "advisor",
            "model": "m",
            "exemplar_ids": [],
        }
        for i in range(n)
    ]


class ResumeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.root = self.tmp / "run"
        self.store = seed_round(plan_run(self.root, endpoints=["http://127.0.0.1:9"], rounds=10))
        self.model: list[bytes] = [self._shard(0)]  # round r → its shard bytes
        self.dirty = False  # leftovers on disk that only a reopen may clean
        self.pending = 0  # faults written since the last reopen that was compared with the model
        self.salt = 0
        COUNTS["histories"] += 1

    def _shard(self, r: int) -> bytes:
        rev = self.store.revision(r)
        return (self.root / rev.shard).read_bytes() if rev.shard else b""

    def teardown(self) -> None:
        if self.dirty:  # a history that ended on a fault: reopen and compare once more, so every fault is checked
            self.reopen()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @precondition(lambda self: not self.dirty)
    @rule(n=st.integers(0, 4))
    def commit(self, n: int) -> None:
        r = self.store.rounds_done
        self.salt += 1
        rev = self.store.last.model_copy(update={"round": r, "weakness": f"w{r}"})
        self.store.commit_round(rev, rows(r, n, self.salt), [], f"card {r}\n")
        self.model.append(self._shard(r))
        COUNTS["steps"] += 1

    @rule(point=st.sampled_from(["shard", "shard+card", "temp shard", "temp revision", "torn revision"]))
    def crash_mid_commit(self, point: str) -> None:
        """What a kill during the next round's commit leaves (no revision record, or an unreadable one)."""
        r = self.store.rounds_done
        name = round_name(r)
        self.salt += 1
        data = parquet_bytes(rows(r, 2, self.salt), ROW_SCHEMA)
        if point.startswith("shard"):
            atomic_write(self.root / "data" / f"{name}.parquet", data)
        if point == "shard+card":
            atomic_write(self.root / "cards" / f"{name}.md", b"card")
        if point == "temp shard":
            (self.root / "data" / f".{name}.parquet.tmp77").write_bytes(data[:10])
        if point == "temp revision":
            (self.root / "revisions" / f".{name}.json.tmp77").write_text('{"round": ')
        if point == "torn revision":
            (self.root / "revisions" / f"{name}.json").write_text('{"round": ')
        self.dirty = True
        self.pending += 1
        COUNTS["crashes"] += 1

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def bit_rot(self, data: st.DataObject) -> None:
        """A committed shard changes on disk: its round and every later one are set aside at reopen."""
        candidates = [r for r in range(len(self.model)) if self.model[r]]
        if not candidates:
            return
        r = data.draw(st.sampled_from(candidates))
        path = self.root / "data" / f"{round_name(r)}.parquet"
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))
        del self.model[r:]
        self.dirty = True
        self.pending += 1
        COUNTS["corruptions"] += 1

    @rule()
    def reopen(self) -> None:
        self.store = RunStore.open(self.root)
        self.dirty = False
        if not self.model:  # round 0 itself rotted: the run has no complete round left
            assert self.store.rounds_done == 0
            COUNTS["survived"] += self.pending
            self.pending = 0
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = Path(tempfile.mkdtemp())
            self.root = self.tmp / "run"
            self.store = seed_round(plan_run(self.root, endpoints=["http://127.0.0.1:9"], rounds=10))
            self.model = [self._shard(0)]
            return
        self.holds_exactly_the_model()
        COUNTS["survived"] += self.pending  # survived: the reopened store was just compared with the model
        self.pending = 0

    @invariant()
    def holds_exactly_the_model(self) -> None:
        if self.dirty:
            return
        store = RunStore.open(self.root, repair=False)  # verifies every sha256; raises on any leftover damage
        assert store.rounds_done == len(self.model)
        for r, blob in enumerate(self.model):
            assert self._shard(r) == blob
        ids = store.table().column("id").to_pylist()
        assert len(ids) == len(set(ids))
        assert not list(self.root.rglob(".*.tmp*"))
        digest = sha256((self.root / "revisions" / f"{round_name(store.rounds_done - 1)}.json").read_bytes())
        message = f"Round {store.rounds_done - 1}: w (+2 rows)\n\nsome text\n" + trailers(
            store.info.run_id, store.rounds_done - 1, digest
        )
        assert parse_trailers(message) == (store.info.run_id, store.rounds_done - 1, digest)


ResumeMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
)
TestResumeMachine = ResumeMachine.TestCase


@given(title=st.text(max_size=120), r=st.integers(0, 10**6))
@settings(max_examples=200, deadline=None)
def test_no_model_text_in_a_commit_title_can_forge_trailers(title: str, r: int) -> None:
    """The commit title carries the weakness (model text, one line): it can never add or change trailers."""
    one_line = " ".join(title.split())[:80]
    message = f"Round {r}: {one_line} (+3 rows)\n\n"
    assert parse_trailers(message) is None
    real = message + trailers("run", r, "ab" * 32)
    assert parse_trailers(real) == ("run", r, "ab" * 32)


def test_summary(tally) -> None:
    """Counts the hypothesis runs above for the reliability table (runs after them in file order)."""
    assert COUNTS["histories"], "run with the state machine above (file order)"
    faults = COUNTS["crashes"] + COUNTS["corruptions"]
    tally.trial(COUNTS["histories"])
    tally.fault(survived=True, n=COUNTS["survived"])
    tally.fault(survived=False, n=faults - COUNTS["survived"])
    tally.note(
        f"stateful: {COUNTS['histories']} histories, {COUNTS['steps']} commits, {COUNTS['crashes']} crash "
        f"leftovers and {COUNTS['corruptions']} bit flips written by the test, each followed by a reopen "
        "compared with the model"
    )
    assert COUNTS["survived"] == faults
