"""The run directory's owner (`hfadvisor.rundir`): old runs still open, resume and keep their bytes;
readers of a run (Hub, export, load_run) do not load the LLM client."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hfadvisor
from hfadvisor.records import Revision
from hfadvisor.rundir import paths
from hfadvisor.rundir.store import RunStore
from tests.test_loop import Script

EXAMPLE_RUNS = Path(__file__).resolve().parent.parent / "spaces" / "example-runs"


def digests(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


@pytest.mark.parametrize("mode", ["advisor", "baseline"])
def test_a_run_made_by_the_previous_version_opens_resumes_and_keeps_its_bytes(tmp_path, scripted_tgi, mode):
    run = tmp_path / "run"
    shutil.copytree(EXAMPLE_RUNS / mode, run)
    before = digests(run)
    store = RunStore.open(run, repair=False)
    done = store.rounds_done
    assert done > 1 and store.table().num_rows == sum(e.rows for e in store.index)

    scripted_tgi.backend.respond = Script()
    store = hfadvisor.run(run, mode=mode, endpoints=[scripted_tgi.url], rounds=done)  # one more round
    assert store.rounds_done == done + 1
    after = digests(run)
    # every file of the earlier rounds is byte-identical; only README.md (the current card) changed
    changed = {f for f in before if after.get(f) != before[f]}
    assert changed == {paths.README}, changed
    new = set(after) - set(before)
    assert paths.revision(done) in new and paths.card(done) in new
    assert all(f.startswith((paths.DATA, paths.REJECTS, paths.CARDS, paths.REVISIONS, paths.SESSIONS)) for f in new)
    rev = Revision.model_validate_json((run / paths.revision(done)).read_bytes())
    assert rev.round == done and (rev.shard is None or rev.shard == paths.data_shard(done))
    assert RunStore.open(run, repair=False).table().num_rows == store.table().num_rows


def test_readers_of_a_run_do_not_load_the_llm_client():
    """The Hub, export and load_run read a run without `hfadvisor.respond`, the loop or the API."""
    code = (
        "import sys, hfadvisor.hub, hfadvisor.export, hfadvisor.rundir.dataset, hfadvisor.rundir.labels\n"
        "hfadvisor.load_run\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('hfadvisor'))))\n"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert {"hfadvisor.hub.publish", "hfadvisor.export", "hfadvisor.rundir.dataset"} <= loaded
    forbidden = {
        "hfadvisor.respond", "hfadvisor.api", "hfadvisor.loop", "hfadvisor.evaluate", "hfadvisor.stages",
        "hfadvisor.llm", "hfadvisor.llm.client",
    }  # fmt: skip
    assert not loaded & forbidden, loaded & forbidden
