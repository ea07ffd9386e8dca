"""Opening a run for the Space: a local run directory or a Hub dataset repo made by hfadvisor.

A Hub repo is downloaded (one revision) into a per-session temporary directory with the same
layout as a local run, then read without repairing anything (a viewer must never delete files).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from hfadvisor.errors import RunStateError, SpaceError
from hfadvisor.records import Revision, RunInfo
from hfadvisor.rundir.store import RunStore

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SAMPLE_COLUMNS = ["id", "round", "source", "weakness", "prompt"]


@dataclass
class HubSource:
    """Where a run was downloaded from, to show the Hub state next to it."""

    repo_id: str
    revision: str
    commit: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class RunView:
    """A run opened for viewing: its revisions, rows and rejects in memory (runs shown here are small)."""

    label: str
    path: Path
    info: RunInfo
    revisions: list[Revision]
    rows: pd.DataFrame
    rejects: pd.DataFrame
    labels: pd.DataFrame | None = None
    hub: HubSource | None = None

    @property
    def last_round(self) -> int:
        return len(self.revisions) - 1

    def revision(self, r: int) -> Revision:
        if not 0 <= r <= self.last_round:
            raise SpaceError(f"round {r} does not exist: {self.label} has rounds 0..{self.last_round}")
        return self.revisions[r]


# ---------------------------------------------------------------------------------------------- opening
def open_local(path: str | Path, label: str | None = None, hub: HubSource | None = None) -> RunView:
    """Read a run directory without repairing it (a viewer must never delete files)."""
    p = Path(path)
    store = RunStore.open(p, repair=False)
    revisions = list(store.revisions())
    if not revisions:
        raise SpaceError(f"{label or p} has no complete round yet")
    rows = _to_pandas(store.table()).reindex(columns=[*SAMPLE_COLUMNS, "slot", "model"])
    rejects = _to_pandas(store.rejects_table())
    return RunView(
        label=label or str(p),
        path=p,
        info=store.info,
        revisions=revisions,
        rows=rows,
        rejects=rejects,
        labels=read_labels(p, rows),
        hub=hub,
    )


def classify_source(source: str) -> str:
    """'local' for an existing directory, 'hub' for an `owner/name` repo id; else a readable error."""
    text = source.strip()
    if not text:
        raise SpaceError("type a run directory or a Hub dataset repo id (owner/name)")
    if Path(text).expanduser().is_dir():
        return "local"
    if HUB_ID_RE.match(text):
        return "hub"
    raise SpaceError(f"{text!r} is neither a run directory nor a Hub dataset repo id (owner/name)")


def open_source(
    source: str,
    revision: str | None = None,
    *,
    token: str | None = None,
    allow_local: bool = True,
    server_token: bool = True,
    workdir: Path | None = None,
) -> RunView:
    """Open a local run directory or a Hub repo made by hfadvisor (optionally at a tag/revision).

    `token` is the session's own token; with none, `server_token` decides whether the process's
    login may be used (yes for `hfadvisor space` on one's own machine, no on a public Space).
    """
    kind = classify_source(source)
    text = source.strip()
    if kind == "local":
        if not allow_local:
            raise SpaceError("this Space opens Hub dataset repos (owner/name), not server paths")
        if revision and revision.strip():
            raise SpaceError("a revision applies to Hub repos only; a local run directory has every round")
        return open_local(Path(text).expanduser())
    return open_hub(text, revision, token=token, server_token=server_token, workdir=workdir)


def open_hub(
    repo_id: str,
    revision: str | None = None,
    *,
    token: str | None = None,
    server_token: bool = True,
    workdir: Path | None = None,
) -> RunView:
    """Download a Hub dataset repo (one revision) into a fresh temporary directory and open it."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    auth: str | bool | None = token or (None if server_token else False)
    rev = (revision or "").strip() or None
    target = Path(tempfile.mkdtemp(prefix="hfadvisor-space-", dir=workdir))
    try:
        try:
            snapshot_download(repo_id, repo_type="dataset", revision=rev, token=auth, local_dir=target)
            refs = HfApi().list_repo_refs(repo_id, repo_type="dataset", token=auth)
            info = HfApi().dataset_info(repo_id, revision=rev, token=auth)
        except GatedRepoError:
            raise SpaceError(f"{repo_id} is gated: accept its conditions on the Hub, then type a token") from None
        except RevisionNotFoundError:
            raise SpaceError(f"{repo_id} has no revision {rev!r}: pick one of its round tags") from None
        except RepositoryNotFoundError:
            hint = "check the name" if token else "check the name, or type a token that can read it if it is private"
            raise SpaceError(f"Hub dataset repo {repo_id} not found: {hint}") from None
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else "an error"
            raise SpaceError(f"the Hub answered {status} for {repo_id}; try again later") from None
        except OSError as e:
            raise SpaceError(f"cannot reach the Hub for {repo_id} ({type(e).__name__}); check the network") from None
        tags = sorted(t.name for t in refs.tags)
        hub = HubSource(repo_id, rev or "main", info.sha, tags)
        label = f"{repo_id}@{rev}" if rev else repo_id
        try:
            return open_local(target, label=label, hub=hub)
        except RunStateError as e:
            raise SpaceError(f"{label} is not a readable hfadvisor run: {_strip_path(str(e), target)}") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _strip_path(message: str, root: Path) -> str:
    return message.replace(str(root) + "/", "").replace(str(root), "the repo")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=None) if table.num_rows else pd.DataFrame(columns=table.schema.names)


# ---------------------------------------------------------------------------------------------- labels
def read_labels(path: Path, rows: pd.DataFrame) -> pd.DataFrame | None:
    """The newest intact labels version pulled from Argilla (`hfadvisor label pull`), if any.

    Each pull stores a complete snapshot, so only the latest counts (reading every version
    would count a label once per pull); a torn or tampered version is skipped by its hash.
    """
    from hfadvisor.rundir.labels import latest

    labels = latest(path)
    if labels is None or not labels.rows:
        return None
    frame = pd.DataFrame(labels.rows)
    frame["label_file"] = labels.manifest.shard
    return frame


def labels_for_round(view: RunView, r: int) -> pd.DataFrame | None:
    if view.labels is None or "round" not in view.labels.columns:
        return view.labels
    return view.labels[view.labels["round"] == r].reset_index(drop=True)
