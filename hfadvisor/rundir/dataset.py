"""A run as a `datasets.Dataset`, read without the LLM client (notebooks, the Space, training scripts)."""

from __future__ import annotations

from pathlib import Path

import datasets

from hfadvisor.records import ROW_FEATURES
from hfadvisor.rundir.responses import attach_responses
from hfadvisor.rundir.store import RunStore


def load_run(path: str | Path, round: int | None = None) -> datasets.Dataset:
    """The rows of rounds 0..`round` (default: all complete rounds) as a `datasets.Dataset`.

    Once `hfadvisor respond` has answered the run, a `response` column holds the answers
    (null for rows not answered yet).

    Args:
        path: the run directory (opened read-only: nothing is repaired or removed).
        round: the last round to include.

    Returns:
        The rows, with the features of `records.ROW_FEATURES` (+ `response`).

    Raises:
        RunStateError: `path` is not a run, is damaged, or has no round `round`.
    """
    store = RunStore.open(path, repair=False)
    table, features = attach_responses(store, store.table(round), ROW_FEATURES)
    return datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features))
