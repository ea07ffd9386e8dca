"""Restore a run from the Hub, at any round's tag, so `hfadvisor run DIR` continues it elsewhere.

The files are downloaded next to the target, verified as a run (sequence of revisions,
every shard against its sha256), and only then renamed into place: an interrupted or
failed pull leaves no half-written run directory behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import constants, get_token, snapshot_download

from hfadvisor.errors import HubError, RunStateError
from hfadvisor.hub.errors import describe
from hfadvisor.rundir import paths
from hfadvisor.rundir.files import atomic_write
from hfadvisor.rundir.store import RunStore


def pull_run(repo_id: str, run_dir: str | Path, *, revision: str | None = None, token: str | None = None) -> RunStore:
    """Download the run in `repo_id` (at `revision`, default main) into the new directory `run_dir`.

    `token` replaces the process's login (HF_TOKEN / stored login) for this download only.
    """
    out = Path(run_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunStateError(f"{out} exists and is not empty: pull into a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.pull-", dir=out.parent))
    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        try:
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=revision,
                local_dir=tmp,
                allow_patterns=paths.HUB_RUN_FILES,
                token=token,
            )
        except Exception as e:
            secret = token or get_token()
            raise HubError(describe(e, endpoint=constants.ENDPOINT, repo_id=where, token=secret)) from None
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        if not (tmp / paths.RUN_JSON).is_file():
            raise HubError(f"{where} is not an hfadvisor run (no run.json): pull a repo that `hfadvisor push` wrote")
        try:
            store = RunStore.open(tmp, repair=False)
        except RunStateError as e:
            raise HubError(f"{where} does not hold a complete run: {e}") from None
        if store.last is None:
            raise HubError(f"{where} holds no complete round")
        atomic_write(tmp / paths.README, (tmp / store.last.card).read_bytes())
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunStore.open(out, repair=False, verify=False)
