"""Training rows: an export (or a run exported on the fly), optionally mixed with general instruction data.

Rows become TRL's conversational prompt-completion format (`prompt`: the messages before the
last, `completion`: the last, assistant message), so the loss covers only the response, as the
reference code's completion-only collator did. General data is mixed in the way the paper
mixed Alpagasus into its safety data; the accepted columns are listed in `GENERAL_FORMATS`.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfadvisor.errors import ConfigError, RunStateError

GENERAL_FORMATS = (
    "`messages` (a list of {role, content}, last one from the assistant)",
    "`instruction` + `output` (optional `input` appended to the instruction, as Alpaca/Alpagasus)",
    "`prompt` + `response` (the reference code's alpagasus.jsonl)",
)
EXPORT_DIRNAME = "export"  # where a run directory is exported on the fly, inside the training output


@dataclass
class TrainData:
    """What the model trains on, and where it came from (for the model card)."""

    train: Any  # datasets.Dataset with `prompt` / `completion`
    eval: Any | None  # the export's validation split, if any
    manifest: dict[str, Any]  # the export's export.json
    export_dir: Path
    advisor_rows: int
    general_rows: int = 0
    general_available: int = 0
    general_skipped: int = 0  # rows of the general dataset in none of the accepted shapes
    notes: list[str] = field(default_factory=list)


def check_source(source: Path) -> str:
    """ "export" or "run": what `source` is (checked before anything slow is loaded)."""
    if not source.exists():
        raise ConfigError(f"{source} does not exist: give an export directory (hfadvisor export) or a run directory")
    if (source / "export.json").is_file():
        return "export"
    if (source / "run.json").is_file():
        return "run"
    raise ConfigError(
        f"{source} is neither an export (no export.json) nor a run directory (no run.json): "
        "give the output of `hfadvisor export` or a run directory after `hfadvisor respond`"
    )


def resolve_export(source: Path, workdir: Path, *, system: str | None, reuse: bool) -> Path:
    """The export directory to train on: `source` itself, or `workdir/export` made from a run directory.

    `reuse`: a resumed training keeps the export it started from, so the data cannot shift under a checkpoint.
    """
    if check_source(source) == "export":
        return source
    target = workdir / EXPORT_DIRNAME
    if reuse and (target / "export.json").is_file():
        return target
    from hfadvisor.export import export

    export(source, target, fmt="sft", system=system, jsonl=False)
    return target


def read_export(folder: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """export.json and the rows of each split, checked against the manifest's sha256 digests."""
    import pyarrow.parquet as pq

    from hfadvisor.rundir.files import sha256

    try:
        manifest = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        files: dict[str, str] = manifest["files"]
        fmt = manifest["format"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{folder}/export.json is not an hfadvisor export manifest: export the run again") from None
    if fmt != "sft":
        raise ConfigError(f"{folder} is a {fmt!r} export without responses: export with --format sft to train on it")
    splits: dict[str, list[dict[str, Any]]] = {}
    for rel, digest in files.items():
        if not rel.startswith("data/") or not rel.endswith(".parquet"):
            continue
        path = folder / rel
        data = path.read_bytes() if path.is_file() else b""
        if sha256(data) != digest:
            raise ConfigError(f"{path} is missing or changed since the export: export the run again")
        split = rel.split("/")[1].rsplit("-", 1)[0]
        splits.setdefault(split, []).extend(pq.read_table(io.BytesIO(data)).to_pylist())
    if not splits.get("train"):
        raise RunStateError(f"{folder} has no train rows: export more rounds, or with a larger train fraction")
    return manifest, splits


def as_completion(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """messages → {prompt, completion}; None unless it ends with a non-empty assistant answer to something."""
    clean = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in messages or []]
    if len(clean) < 2 or clean[-1]["role"] != "assistant" or not clean[-1]["content"].strip():
        return None
    return {"prompt": clean[:-1], "completion": clean[-1:]}


def general_messages(row: dict[str, Any]) -> list[dict[str, str]] | None:
    """One general instruction row as chat messages, from any shape in `GENERAL_FORMATS`; None if none fits."""
    if isinstance(row.get("messages"), list):
        return row["messages"]
    if isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str):
        extra = row.get("input")
        prompt = row["instruction"] + (f" {extra}" if isinstance(extra, str) and extra.strip() else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    if isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
    return None


def general_wanted(advisor_rows: int, ratio: float) -> int:
    """General rows so that they are `ratio` of the mix: n / (advisor + n) = ratio."""
    return round(advisor_rows * ratio / (1 - ratio)) if ratio > 0 else 0


def load_general(dataset_id: str, split: str) -> Any:
    """`datasets.load_dataset(ID, split=SPLIT)`, its failures as one line."""
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"--mix-with {dataset_id!r} (split {split!r}) could not be loaded: {first}; "
            "check the Hub id, the split (--mix-split) and your token"
        ) from None


def prepare(
    export_dir: Path,
    *,
    mix_with: str | None = None,
    mix_ratio: float = 0.5,
    mix_split: str = "train",
    seed: int = 0,
    evaluate: bool = True,
) -> TrainData:
    """The training (and validation) datasets of an export, mixed with `mix_with` at `mix_ratio`."""
    from datasets import Dataset

    manifest, splits = read_export(export_dir)
    advisor = [c for row in splits["train"] if (c := as_completion(row["messages"])) is not None]
    if not advisor:
        raise RunStateError(f"{export_dir} has no train rows with an assistant response: run `hfadvisor respond`")
    data = TrainData(train=None, eval=None, manifest=manifest, export_dir=export_dir, advisor_rows=len(advisor))
    rows = list(advisor)
    if mix_with and mix_ratio > 0:
        general = load_general(mix_with, mix_split)
        data.general_available = len(general)
        usable = []
        for row in general:
            messages = general_messages(row)
            pair = as_completion(messages) if messages is not None else None
            if pair is None:
                data.general_skipped += 1
            else:
                usable.append(pair)
        if not usable:
            raise ConfigError(
                f"--mix-with {mix_with!r}: no row has a usable shape (columns {', '.join(general.column_names)}); "
                "accepted: " + "; ".join(GENERAL_FORMATS)
            )
        want = general_wanted(len(advisor), mix_ratio)
        random.Random(seed).shuffle(usable)
        if want > len(usable):
            data.notes.append(f"--mix-ratio {mix_ratio} wants {want} general rows; {mix_with} has {len(usable)}")
        rows += usable[:want]
        data.general_rows = min(want, len(usable))
    random.Random(seed + 1).shuffle(rows)
    data.train = Dataset.from_list(rows)
    validation = [c for row in splits.get("validation", []) if (c := as_completion(row["messages"])) is not None]
    if evaluate and validation:
        data.eval = Dataset.from_list(validation)
    return data
