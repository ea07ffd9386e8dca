"""The benchmark command runs (issue #8): `python -m benchmarks.run --quick --only P1` prints its table.

Only that it runs and measures: speed targets live in the benchmarks, never in unit tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_quick_benchmark_prints_the_p1_ratio(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "P1", "--json", str(tmp_path / "raw.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| P1 critical path"))
    ratio = float(re.split(r"\s*\|\s*", row)[2])
    assert 0.9 < ratio < 10  # a real measurement: the run cannot beat R x 3L, and it finished
    raw = (tmp_path / "raw.json").read_text()
    assert '"busy_max": 12' in raw  # the 12 generations of a round were served at once
