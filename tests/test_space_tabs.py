"""The Space's tab handlers called as plain functions (no browser, no server): options and session in,
what the page would show out. Also: the Space no longer imports `compare` or matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hfadvisor.rundir.store import RunStore
from hfadvisor.space.data import SpaceError
from hfadvisor.space.state import Session, SpaceOptions
from hfadvisor.space.tabs import compare, explore, start
from tests.test_space_support import shared_runs


def no_progress(*args: object, **kwargs: object) -> None:
    """Stands in for gr.Progress, which only reports inside a running event."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory.getbasetemp() / "space-runs")


def test_explore_handlers_open_a_run_step_and_filter(runs):
    opts = SpaceOptions()
    out = explore.open_run(opts, str(runs["advisor"]), "", "", "", "all", False, None, progress=no_progress)
    session, header, timeline, slider, _revision, weakness, *_ = out
    assert isinstance(session, Session) and session.views["main"].path == runs["advisor"]
    revs = list(RunStore.open(runs["advisor"]).revisions())
    assert timeline["round"].tolist() == [r.round for r in revs]
    assert slider["value"] == slider["maximum"] == len(revs) - 1  # opens at the last round
    assert weakness == revs[-1].weakness and "advisor run" in header

    shown = explore.show_round(1, "", "all", False, session)
    assert shown[0] == revs[1].weakness
    assert shown[3]["round"].tolist() == [1] * revs[1].rows
    assert explore.step(+1, len(revs) - 1, session)["value"] == len(revs) - 1  # kept within the run
    assert explore.step(-1, 0, session)["value"] == 0
    assert explore.filter_samples(2, "", "all", True, session)["round"].max() == 2
    with pytest.raises(SpaceError, match="open a run first"):
        explore.show_round(0, "", "all", False, None)
    session.close()
    assert not session.workdir.exists()


def test_a_public_space_refuses_server_paths_but_opens_bundled_runs(runs):
    opts = SpaceOptions.public_space()
    opts.named = {"example: advisor": runs["advisor"]}
    with pytest.raises(SpaceError, match="not server paths"):
        explore.open_run(opts, str(runs["advisor"]), "", "", "", "all", False, None, progress=no_progress)
    session, header, *_ = explore.open_run(
        opts, "example: advisor", "", "", "", "all", False, None, progress=no_progress
    )
    assert session.views["main"].label == "example: advisor" and str(runs["advisor"]) not in header
    session.close()


def test_compare_handler_measures_both_runs_on_one_category_list(runs):
    from hfadvisor.metrics.run import shared_categories

    session, table, cov, cat = compare.compare(
        SpaceOptions(), str(runs["advisor"]), "", str(runs["baseline"]), "", "", None, progress=no_progress
    )
    assert table["mode"].tolist() == ["advisor", "baseline"]
    stores = [RunStore.open(runs[m]) for m in ("advisor", "baseline")]
    categories, _ = shared_categories(stores)
    assert all(c.endswith(f" of {len(categories)}") for c in table["categories covered (shared list)"])
    assert len(cov.data) == 4 and len(cat.data) == 2
    with pytest.raises(SpaceError, match="second run"):
        compare.compare(SpaceOptions(), str(runs["advisor"]), "", " ", "", "", session, progress=no_progress)
    session.close()


def test_start_handlers_refuse_what_a_space_does_not_allow(tmp_path):
    opts = SpaceOptions(allow_endpoints=False, max_rounds=2)
    with pytest.raises(SpaceError, match="embedded model only"):
        next(start.start_run(opts, "advisor", "http://127.0.0.1:9", "tgi", 1, 1, "", None))
    with pytest.raises(SpaceError, match="a Space run is small"):
        next(start.start_run(SpaceOptions(max_rounds=2), "advisor", "", "tgi", 3, 1, "", None))
    assert start.stop_run(None) == "No run of this session is going."
    with pytest.raises(SpaceError, match="let it finish"):
        start.push_own_run(opts, "me/run", False, "", Session(workdir=tmp_path))


def test_the_space_imports_neither_compare_nor_matplotlib():
    code = (
        "import sys; from hfadvisor.space import build_app, SpaceOptions; build_app(SpaceOptions()); "
        "import hfadvisor.space.tabs.compare, hfadvisor.metrics.run; "
        "print(sorted(m for m in sys.modules if m == 'hfadvisor.compare' or m.startswith('matplotlib')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_measure_runs_round_by_round_on_the_shared_list(runs):
    from hfadvisor.errors import ConfigError
    from hfadvisor.metrics.run import measure_runs, shared_categories

    stores = [RunStore.open(runs[m]) for m in ("advisor", "baseline")]
    measured = measure_runs(stores, upto=1)
    assert measured.categories == shared_categories(stores)[0]
    for i, store in enumerate(stores):
        series = measured.series[i]
        assert [p["round"] for p in series] == [0, 1]
        assert series[-1]["rows"] == store.table(1).num_rows
        assert sum(measured.final(i)["rows_per_category"].values()) == store.table(1).num_rows
        assert "rows_per_category" not in series[0]  # kept for the last round only
    with pytest.raises(ConfigError, match="--rounds must be"):
        measure_runs(stores, upto=-1)
