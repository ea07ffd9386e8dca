"""Export a run for training: chat-format (`messages`) rows with deterministic train/validation/test splits.

A row's split depends only on its id (a hash of `salt` and the id, mapped to [0, 1)), so it
never changes between exports: re-exporting after more rounds only adds rows, and a row
that was in `test` stays in `test`. Output: `data/<split>-<hash>.parquet` (+ `<split>.jsonl`), a
README whose YAML lets `datasets.load_dataset(DIR)` return the splits, and `export.json`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, List, Value

from hfadvisor.errors import ConfigError, RunStateError
from hfadvisor.records import ROW_FEATURES, arrow_schema
from hfadvisor.rundir.files import sha256
from hfadvisor.rundir.responses import attach_responses, read_config
from hfadvisor.rundir.store import RunStore

SPLITS: dict[str, float] = {"train": 0.9, "validation": 0.05, "test": 0.05}
SALT = "hfadvisor-split-v1"
FORMATS = ("sft", "prompts")
MESSAGE = {"role": Value("string"), "content": Value("string")}
FEATURES = {
    "sft": Features(
        {
            "id": Value("string"),
            "messages": List(MESSAGE),
            "category": Value("string"),
            "round": Value("int32"),
            "source": Value("string"),
        }
    ),
    "prompts": Features(
        {
            "id": Value("string"),
            "prompt": Value("string"),
            "category": Value("string"),
            "round": Value("int32"),
            "source": Value("string"),
        }
    ),
}


@dataclass
class ExportManifest:
    """What an export holds (`export.json` is its `to_dict()`): which run, rounds, format, splits and files."""

    run_id: str
    mode: str
    config_hash: str
    upto_round: int
    format: str
    splits: dict[str, int]  # rows per split
    fractions: dict[str, float]
    salt: str
    rows_without_response: int  # sft: rows left out because `respond` has not answered them yet
    response_model: str | None
    system: str | None
    files: dict[str, str]  # relative path → sha256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_splits(spec: str) -> dict[str, float]:
    """'0.8,0.1,0.1' → train/validation/test fractions (they must sum to 1)."""
    try:
        parts = [float(x) for x in spec.split(",")]
    except ValueError:
        raise ConfigError(f"--splits {spec!r}: give three fractions like 0.9,0.05,0.05") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise ConfigError(f"--splits {spec!r}: give three non-negative fractions summing to 1, like 0.9,0.05,0.05")
    return dict(zip(SPLITS, parts, strict=True))


def split_of(row_id: str, fractions: dict[str, float] = SPLITS, salt: str = SALT) -> str:
    """The split of a row, from its id alone (stable across exports, runs and machines)."""
    u = int.from_bytes(hashlib.blake2b(f"{salt}\0{row_id}".encode(), digest_size=8).digest(), "big") / 2**64
    edge = 0.0
    for name, share in fractions.items():
        edge += share
        if u < edge:
            return name
    return next(name for name, share in reversed(fractions.items()) if share > 0)


def _rows(store: RunStore, fmt: str, upto: int | None, system: str | None) -> tuple[list[dict[str, Any]], int]:
    table, _ = attach_responses(store, store.table(upto), ROW_FEATURES)
    has_responses = "response" in table.column_names
    if fmt == "sft" and not has_responses:
        raise RunStateError(
            f"{store.path} has no responses yet: run `hfadvisor respond {store.path} --endpoint URL` first "
            "(or export --format prompts)"
        )
    out, missing = [], 0
    for row in table.to_pylist():
        base = {"id": row["id"], "category": row["weakness"], "round": row["round"], "source": row["source"]}
        if fmt == "prompts":
            out.append({**base, "prompt": row["prompt"]})
            continue
        if row.get("response") is None:
            missing += 1
            continue
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
        out.append({**base, "messages": messages})
    return out, missing


def export(
    run_dir: str | Path,
    output: str | Path,
    *,
    fmt: str = "sft",
    upto: int | None = None,
    splits: dict[str, float] | None = None,
    jsonl: bool = True,
    system: str | None = None,
    salt: str = SALT,
) -> ExportManifest:
    """Write the export to `output` (created, or replacing an earlier export).

    Args:
        run_dir: the run (read-only).
        output: a new directory, or an earlier export (replaced only once the new one is complete).
        fmt: `sft` (chat `messages`: prompt + response; needs `hfadvisor respond`) or `prompts`.
        upto: the last round to export (default: all).
        splits: train/validation/test fractions (`parse_splits`); `salt` picks the hash.
        jsonl: also write `<split>.jsonl`.
        system: a system message put first in every conversation.

    Returns:
        The export's manifest (also in `export.json`).

    Raises:
        ConfigError: bad format, or `output` is something else.
        RunStateError: nothing to export, or `sft` without responses.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    fractions = splits or SPLITS
    out = Path(output)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "export.json").is_file())):
        raise ConfigError(f"{out} exists and is not an earlier export: choose a new or empty --output directory")
    store = RunStore.open(run_dir, repair=False)
    rows, missing = _rows(store, fmt, upto, system)
    if not rows:
        raise RunStateError(f"{store.path}: nothing to export (no answered rows up to the requested round)")
    by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in fractions}
    for row in rows:
        by_split[split_of(row["id"], fractions, salt)].append(row)

    schema = arrow_schema(FEATURES[fmt])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        files: dict[str, str] = {}
        for name, part in by_split.items():
            if not part:  # `datasets` cannot read a zero-row Parquet file
                continue
            (tmp / "data").mkdir(exist_ok=True)
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pylist(part, schema=schema), buf)
            digest = sha256(buf.getvalue())
            # The content hash in the name: `datasets` caches a local folder by its YAML data_files,
            # so an export that rewrote `train.parquet` in place could be served stale from cache.
            rel = f"data/{name}-{digest[:10]}.parquet"
            (tmp / rel).write_bytes(buf.getvalue())
            files[rel] = digest
            if jsonl:
                text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
                (tmp / f"{name}.jsonl").write_text(text, encoding="utf-8")
                files[f"{name}.jsonl"] = sha256(text.encode())
        responses = read_config(store)
        manifest = ExportManifest(
            run_id=store.info.run_id,
            mode=store.info.mode,
            config_hash=store.info.config_hash,
            upto_round=store.rounds_done - 1 if upto is None else upto,
            format=fmt,
            splits={name: len(part) for name, part in by_split.items()},
            fractions=fractions,
            salt=salt,
            rows_without_response=missing,
            response_model=responses.model if responses and fmt == "sft" else None,
            system=system,
            files=files,
        )
        (tmp / "export.json").write_text(json.dumps(manifest.to_dict(), indent=1) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_readme(manifest, store), encoding="utf-8")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(new: Path, out: Path) -> None:
    """Swap the finished export in; an earlier export is removed only once the new one is in place."""
    os.chmod(new, 0o755)
    if out.exists():
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


def _readme(manifest: ExportManifest, store: RunStore) -> str:
    import yaml

    from hfadvisor.card import md

    data_files = [
        {"split": rel.split("/")[1].rsplit("-", 1)[0], "path": rel} for rel in manifest.files if rel.startswith("data/")
    ]
    meta = {
        "configs": [{"config_name": "default", "data_files": data_files}],
        "tags": ["hfadvisor", "safety", manifest.mode, manifest.format],
        "license": store.info.preset.get("license", "apache-2.0"),
    }
    counts = ", ".join(f"{name} {n}" for name, n in manifest.splits.items())
    what = (
        "chat-format `messages` (user prompt, assistant response)"
        if manifest.format == "sft"
        else "prompts with their category"
    )
    return (
        f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n"
        f"# Export of hfadvisor run {store.info.run_id[:8]} ({manifest.mode})\n\n"
        f"Rounds 0..{manifest.upto_round}, {what}: {counts}.\n"
        "Splits come from a hash of each row's id, so they are the same in every export of this run.\n"
        + (
            f"Responses by {md(manifest.response_model)}; {manifest.rows_without_response} rows without a "
            "response were left out.\n"
            if manifest.format == "sft"
            else ""
        )
        + "\n**Content warning**: the prompts are harmful requests written for safety alignment.\n"
    )
