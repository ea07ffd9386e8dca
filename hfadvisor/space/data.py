"""What the Space shows, computed from a run directory with no UI code.

Kept apart from the Gradio layer so the same views serve the browser, the API
(`gradio_client`) and plain tests, and so opening a run never depends on a UI library.
A run comes from a local directory or a Hub dataset repo made by hfadvisor (same layout,
downloaded into a per-session temporary directory).
"""

from __future__ import annotations

import difflib
import html
import io
import itertools
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from hfadvisor.errors import HFAdvisorError, RunStateError
from hfadvisor.records import Revision, RunInfo
from hfadvisor.stages.text import normalize
from hfadvisor.rundir.store import RunStore

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SAMPLE_COLUMNS = ["id", "round", "source", "weakness", "prompt"]
REJECT_COLUMNS = ["id", "round", "stage", "reason", "text"]
UNTARGETED = "(untargeted: self-instruct)"
SOURCES = ("all", "seed", "advisor", "baseline")
TIMELINE_COLUMNS = [
    "round",
    "weakness",
    "rows",
    "total rows",
    "rejects",
    "reject reasons",
    "summary",
    "summary lines",
    "seconds",
]


class SpaceError(HFAdvisorError):
    """A user-facing problem in the Space (bad source, missing round, Hub refused): one readable line."""


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
    from hfadvisor.labelling.pull import latest

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


# ---------------------------------------------------------------------------------------------- timeline
def _reasons(rev: Revision) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in sorted(rev.reject_reasons.items()))


def weakness_text(rev: Revision) -> str:
    if rev.round == 0:
        return "(seeds)"
    return rev.weakness or ("(self-instruct: no weakness)" if rev.mode == "baseline" else "—")


def timeline(view: RunView) -> pd.DataFrame:
    """One line per round: what it targeted, what it added, what it rejected, how the summary changed."""
    return timeline_of(view.revisions, _labelled_counts(view))


def timeline_of(revisions: list[Revision], labelled: dict[int, int] | None = None) -> pd.DataFrame:
    total = 0
    records = []
    for rev in revisions:
        total += rev.rows
        rec: dict[str, Any] = {
            "round": rev.round,
            "weakness": weakness_text(rev),
            "rows": rev.rows,
            "total rows": total,
            "rejects": rev.rejects,
            "reject reasons": _reasons(rev),
            "summary": rev.summary_source,
            "summary lines": len(rev.summary_after),
            "seconds": round(rev.timings.total, 1),
        }
        if labelled is not None:
            rec["labelled"] = labelled.get(rev.round, 0)
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=TIMELINE_COLUMNS + (["labelled"] if labelled is not None else []))


def _labelled_counts(view: RunView) -> dict[int, int] | None:
    if view.labels is None or "round" not in view.labels.columns:
        return None
    ids = view.labels.drop_duplicates("id") if "id" in view.labels.columns else view.labels
    return {int(k): int(v) for k, v in ids["round"].dropna().value_counts().items()}


def summary_diff(rev: Revision) -> list[tuple[str, str]]:
    """(op, line) pairs from the summary before the round to after it: op in ' ', '+', '-'."""
    before, after = rev.summary_before, rev.summary_after
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [(" ", line) for line in before[i1:i2]]
        else:
            out += [("-", line) for line in before[i1:i2]]
            out += [("+", line) for line in after[j1:j2]]
    return out


def summary_diff_html(rev: Revision) -> str:
    """The diff as escaped HTML (summary lines are model text: never trusted as markup)."""
    if rev.round == 0:
        lines = [(" ", line) for line in rev.summary_after]
        head = "Seed summary" if lines else "No summary (Self-Instruct keeps none)"
    elif rev.mode == "baseline":
        return '<div class="summary-diff"><p>Self-Instruct rounds keep no summary.</p></div>'
    else:
        lines = summary_diff(rev)
        added = sum(op == "+" for op, _ in lines)
        removed = sum(op == "-" for op, _ in lines)
        head = f"Summary after round {rev.round}: +{added} / −{removed} lines ({html.escape(rev.summary_source)})"
    cls = {" ": "same", "+": "added", "-": "removed"}
    body = "".join(
        f'<div class="{cls[op]}"><span class="op">{html.escape(op)}</span> {html.escape(line)}</div>'
        for op, line in lines
    )
    note = f'<p class="note">{html.escape(rev.summary_note)}</p>' if rev.summary_note else ""
    return f'<div class="summary-diff"><p class="head">{head}</p>{body}{note}</div>'


def round_markdown(view: RunView, r: int) -> str:
    """Counts, rejects, timings and plugin sections of one round (model text escaped)."""
    from hfadvisor.card import md

    rev = view.revision(r)
    total = sum(x.rows for x in view.revisions[: r + 1])
    planned = rev.rounds_planned or view.revisions[-1].rounds_planned or view.last_round
    lines = [
        f"### Round {r} of {planned}",
        "",
        "| | this round |",
        "|---|---|",
        f"| weakness targeted | {md(weakness_text(rev))} |",
        f"| rows added / total | {rev.rows} / {total} |",
        f"| rejected | {rev.rejects}{' (' + md(_reasons(rev)) + ')' if rev.rejects else ''} |",
        f"| summary update | {md(rev.summary_source)} |",
        f"| model | {md(rev.model)} |",
        f"| requests / retries / failures | {rev.ledger.requests} / {rev.ledger.retries} / {rev.ledger.failures} |",
    ]
    if rev.ledger.rate_limited:
        lines.append(
            f"| overload answers / times concurrency lowered | {rev.ledger.rate_limited} / {rev.ledger.throttled} |"
        )
    lines.append(f"| seconds | {rev.timings.total:.1f} |")
    labels = labels_for_round(view, r)
    if labels is not None:
        lines.append(f"| human labels | {len(labels)} |")
    for section in rev.sections:  # plugin markdown: already escaped by its plugin
        lines += ["", f"#### {md(section.title)}", "", section.markdown]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- samples
def samples(view: RunView, r: int, *, query: str = "", source: str = "all", cumulative: bool = False) -> pd.DataFrame:
    """Rows of round r (or rounds 0..r), filtered by a case-insensitive text search and by source."""
    view.revision(r)
    rows = view.rows
    rows = rows[rows["round"] <= r] if cumulative else rows[rows["round"] == r]
    if source and source != "all":
        rows = rows[rows["source"] == source]
    q = query.strip().lower()
    if q:
        hay = rows["prompt"].fillna("").str.lower() + "\n" + rows["weakness"].fillna("").str.lower()
        rows = rows[hay.str.contains(q, regex=False)]
    out = rows[SAMPLE_COLUMNS].reset_index(drop=True)
    out["weakness"] = [(_text(w) or None) for w in out["weakness"]]  # NaN is not a category
    return out


def rejects_of(view: RunView, r: int) -> pd.DataFrame:
    rej = view.rejects
    if not len(rej):
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return rej[rej["round"] == r][REJECT_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- coverage
# Scalar metrics (from the metrics plugin's `extra["metrics"]`) plotted over rounds, with their labels.
METRIC_LABELS = {
    "distinct_2": "distinct-2",
    "vendi": "Vendi score",
    "mean_cosine_distance": "mean cosine distance",
    "near_duplicate_rate": "near-duplicate rate",
}


def _text(value: Any) -> str:
    """A cell as text: None and pandas' NaN (missing weakness of Self-Instruct rows) become ''."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def category_of(weakness: str | None) -> str:
    return _text(weakness) or UNTARGETED


def has_metrics(view: RunView) -> bool:
    """True when every generated round carries the metrics plugin's category assignment (the seed
    round is written before plugins run)."""
    generated = view.revisions[1:]
    return bool(generated) and all(
        isinstance(rev.extra.get("metrics"), dict) and "categories_covered" in rev.extra["metrics"] for rev in generated
    )


def coverage(view: RunView) -> pd.DataFrame:
    """Per round: total rows, categories covered, summary lines and diversity.

    Categories covered come from the metrics plugin when the run has them (every row assigned
    to the closest summary line by embeddings, so a Self-Instruct baseline is measured the same
    way); otherwise they are the distinct categories rows were written for (seeds included).
    """
    use_metrics = has_metrics(view)
    seen: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    n_bigrams = 0
    total = 0
    out = []
    by_round = {int(k): g for k, g in view.rows.groupby("round")} if len(view.rows) else {}
    for rev in view.revisions:
        g = by_round.get(rev.round)
        if g is not None:
            total += len(g)
            seen.update(normalize(_text(w)) for w in g["weakness"] if _text(w))
            for prompt in g["prompt"].fillna(""):
                words = str(prompt).lower().split()
                pairs = list(itertools.pairwise(words))
                n_bigrams += len(pairs)
                bigrams.update(pairs)
        metrics = rev.extra.get("metrics") if isinstance(rev.extra.get("metrics"), dict) else {}
        rec: dict[str, Any] = {
            "round": rev.round,
            "rows": total,
            # the seed round has no metrics: no point rather than a number measured another way
            "categories covered": (int(metrics["categories_covered"]) if metrics else None)
            if use_metrics
            else len(seen),
            "categories total": metrics.get("categories_total") if use_metrics else None,
            "summary lines": len(rev.summary_after) if view.info.mode == "advisor" else None,
            "distinct-2": round(len(bigrams) / n_bigrams, 4) if n_bigrams else None,
        }
        for key, label in METRIC_LABELS.items():
            value = metrics.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                rec[label] = float(value)
        out.append(rec)
    return pd.DataFrame.from_records(out)


def coverage_basis(view: RunView) -> str:
    if has_metrics(view):
        return "rows assigned to the closest summary line (metrics)"
    return "distinct categories rows were written for"


def rows_per_category(view: RunView, upto: int | None = None) -> pd.DataFrame:
    """Rows per category in rounds 0..upto, largest first: the metrics plugin's assignment when the
    round has one, else the category each row was written for."""
    upto = view.last_round if upto is None else upto
    metrics = view.revision(upto).extra.get("metrics")
    per_cat = metrics.get("rows_per_category") if isinstance(metrics, dict) else None
    if isinstance(per_cat, dict) and per_cat:
        counts = pd.Series({str(k): int(v) for k, v in per_cat.items()}).sort_values(ascending=False, kind="stable")
    else:
        rows = view.rows[view.rows["round"] <= upto]
        counts = rows["weakness"].map(category_of).value_counts()
    return pd.DataFrame({"category": counts.index, "rows": counts.to_numpy()})


@dataclass
class SharedMeasure:
    """Runs re-measured against one category list (`hfadvisor.compare`): the fair comparison, since
    each card's own numbers assign rows to that run's own summary."""

    categories: list[str]
    basis: str
    series: list[pd.DataFrame]  # per run, one line per round (rows, categories_covered, distinct_2, ...)
    rows_per_category: list[dict[str, int]]  # per run, at its last round


def shared_measure(views: list[RunView]) -> SharedMeasure | None:
    """Measure every run against the union of the runs' summaries; None without the metrics extra."""
    from hfadvisor.errors import MissingDependencyError

    try:
        from hfadvisor.compare import measure, shared_categories
        from hfadvisor.metrics.embed import shared_embedder

        embedder = shared_embedder()
    except (ImportError, MissingDependencyError):
        return None
    stores = [RunStore.open(v.path, repair=False, verify=False) for v in views]
    categories, basis = shared_categories(stores, None)
    series = [measure(store, embedder, categories) for store in stores]
    return SharedMeasure(
        categories=categories,
        basis=basis,
        series=[
            pd.DataFrame.from_records([{k: v for k, v in s.items() if k != "rows_per_category"} for s in run])
            for run in series
        ],
        rows_per_category=[dict(run[-1].get("rows_per_category") or {}) for run in series],
    )


def compare_table(views: list[RunView], shared: SharedMeasure | None = None) -> pd.DataFrame:
    """One line per run: the figures that tell an advisor run from a baseline at a glance."""
    records = []
    for i, v in enumerate(views):
        cov = coverage(v)
        last = cov.iloc[-1]
        rec: dict[str, Any] = {
            "run": v.label,
            "mode": v.info.mode,
            "rounds": v.last_round,
            "rows": int(last["rows"]),
            "rejects": int(sum(r.rejects for r in v.revisions)),
        }
        if shared is not None:
            final = shared.series[i].iloc[-1]
            rec["categories covered (shared list)"] = f"{int(final['categories_covered'])} of {len(shared.categories)}"
            rec["distinct-2"] = round(float(final["distinct_2"]), 3)
            rec["Vendi score"] = round(float(final["vendi"]), 2)
        else:
            covered = last["categories covered"]
            rec["categories covered (own card)"] = None if pd.isna(covered) else int(covered)
            rec["distinct-2"] = None if pd.isna(last["distinct-2"]) else round(float(last["distinct-2"]), 3)
        records.append(rec)
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------------------------------------- export
def zip_run(path: Path, dest_dir: Path) -> Path:
    """The run directory as one zip (what a user downloads), skipping quarantine and temp files."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{path.name}.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                z.write(f, f"{path.name}/{rel}")
    target.write_bytes(buf.getvalue())
    return target
