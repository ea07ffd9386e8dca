"""The benchmark command runs (issue #8): `python -m benchmarks.run --quick --only P1` prints its table.

Only that it runs and measures: speed targets live in the benchmarks, never in unit tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)
def test_quick_benchmark_prints_the_p1_ratio(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "P1", "--json", str(tmp_path / "raw.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,  # a hang guard only: the quick P1 takes ~15 s
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| P1 critical path"))
    ratio = float(re.split(r"\s*\|\s*", row)[2])
    raw = json.loads((tmp_path / "raw.json").read_text())["P1"]
    assert ratio == pytest.approx(
        raw["result"]["rounds_wall"] / raw["ideal"], abs=5e-4
    )  # the table shows the measurement
    assert ratio > 0.99  # physics, not speed: each round waits for three calls of L in a row
    # what was measured is the run asked for: R rounds of 1 weakness, 12 generations, 1 summary call each
    rounds = raw["result"]["rounds"]
    assert raw["server"]["by_kind"] == {"weakness": rounds, "request": 12 * rounds, "summarize": rounds}
    assert raw["result"]["rows"] == 12 * rounds and 1 <= raw["server"]["in_flight_max"] <= 12
