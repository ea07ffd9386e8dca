"""`datasets.load_dataset(run_dir)` returns the run as it is on disk, however often it is called.

`datasets` caches a local folder by its `configs` YAML, not by the files the globs match
(datasets#2956): before the card named its revision, a run loaded at 13 rows and resumed to 16
loaded as 13 again, and a run replaced under the same name loaded as the old one. The rows are
checked against the Parquet shards read here with pyarrow, not against hfadvisor's own reader.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq

import hfadvisor
from tests.test_loop import Script


def on_disk(run: Path) -> list[tuple[str, str]]:
    """(id, prompt) of every row in the run's shards, read directly."""
    table = pq.read_table(run / "data", columns=["id", "prompt"])
    return list(zip(table.column("id").to_pylist(), table.column("prompt").to_pylist(), strict=True))


def loaded(run: Path) -> list[tuple[str, str]]:
    """What a user gets, called the way the README shows it (no download_mode)."""
    ds = datasets.load_dataset(str(run), split="train")
    return list(zip(ds["id"], ds["prompt"], strict=True))


def test_load_dataset_follows_a_resumed_and_a_replaced_run(tmp_path, scripted_tgi):
    scripted_tgi.backend.respond = Script()  # answers each stage in its own form
    out = tmp_path / "demo"

    def run(rounds: int) -> None:
        hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=rounds, batch_size=3, metrics=False)

    run(1)
    first = loaded(out)
    assert first == on_disk(out) and len(first) == 10 + 3

    run(2)  # resumed: one more round
    grown = loaded(out)
    assert grown == on_disk(out) and len(grown) == len(first) + 3

    shutil.rmtree(out)  # deleted, and a new run started under the same name with as many rows as the first
    run(1)
    replaced = loaded(out)
    assert replaced == on_disk(out) and len(replaced) == len(first)
    assert replaced != first  # the new run's rows, not the cached ones of the old run


def test_load_dataset_rejects_config_follows_the_run(tmp_path, scripted_tgi):
    """The `rejects` config is cached the same way: it must grow with the run too."""
    counter, script = itertools.count(), Script()

    def respond(req) -> str:
        empty = script.stage_of(req.prompt) == "generate" and next(counter) % 4 == 3
        return " " if empty else script(req)  # some empty generations: rejects

    scripted_tgi.backend.respond = respond
    out = tmp_path / "demo"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=1, batch_size=6, metrics=False)
    before = datasets.load_dataset(str(out), "rejects", split="train").num_rows
    assert before == pq.read_table(out / "rejects").num_rows > 0
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, batch_size=6, metrics=False)
    after = datasets.load_dataset(str(out), "rejects", split="train").num_rows
    assert after == pq.read_table(out / "rejects").num_rows > before
