"""Counting for the reliability suite: every test reports what it did, the session prints the table.

Tests take the `tally` fixture and record, under their module's `GROUP`: trials run
(`tally.trial()`), each fault injected together with whether it was survived
(`tally.fault(survived=...)`) and rows lost (`tally.lost(rows)`). A fault is survived only when
the test has verified the outcome against a record of its own (files and sha256 read from disk
before the restart, the test servers' logs, Hub commits, Argilla records), never because the
test reached its end; the tests assert every fault survived after counting it, so a failure
shows in the table and fails the test. Each module names its units in `UNITS` (what one trial
and one fault are). At the end of the session the totals are printed as the README's
"Reliability" table and saved as JSON (`reliability.json` in pytest's base temp directory, or
the path in `HFADVISOR_RELIABILITY_REPORT`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

ORDER = [
    "Kill anywhere (SIGKILL + resume, Hub push)",
    "Endpoint faults",
    "Hub faults",
    "Argilla faults",
    "Bad input",
    "Hostile model output",
    "Secrets",
    "Manifest/resume properties",
]


@dataclass
class Group:
    tests: int = 0
    trials: int = 0
    faults: int = 0  # faults injected (kills, HTTP faults, bad inputs, hostile answers, …): see `units`
    survived: int = 0  # of those, how many the test verified ended as specified
    rows_lost: int = 0  # rows (not rounds) committed before a fault and missing after it
    seconds: float = 0.0
    units: tuple[str, str] = ("", "")  # what one trial is, what one fault is
    notes: list[str] = field(default_factory=list)


class Tally:
    """One test's counts under `group`."""

    def __init__(self, group: Group) -> None:
        self.group = group

    def trial(self, n: int = 1) -> None:
        self.group.trials += n

    def fault(self, *, survived: bool, n: int = 1) -> None:
        """`n` faults injected; `survived` is the test's own verification of what followed them."""
        self.group.faults += n
        self.group.survived += n if survived else 0

    def lost(self, rows: int) -> None:
        self.group.rows_lost += rows

    def note(self, text: str) -> None:
        self.group.notes.append(text)


GROUPS: dict[str, Group] = {}


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """`tally.add(...)` under the test module's `GROUP`."""
    name = getattr(request.module, "GROUP", request.module.__name__)
    group = GROUPS.setdefault(name, Group())
    units = getattr(request.module, "UNITS", None)
    if units is None:
        raise pytest.UsageError(f"{request.module.__name__} must name its units: UNITS = (trial, fault)")
    group.units = tuple(units)
    group.tests += 1
    t0 = time.monotonic()
    yield Tally(group)
    group.seconds += time.monotonic() - t0


def table() -> list[str]:
    names = [n for n in ORDER if n in GROUPS] + [n for n in GROUPS if n not in ORDER]
    lines = [
        "| test group | tests | trials run | faults injected | survived | rows lost | one trial is | one fault is |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total = Group()
    for name in names:
        g = GROUPS[name]
        trial, fault = g.units
        lines.append(
            f"| {name} | {g.tests} | {g.trials} | {g.faults} | {g.survived} | {g.rows_lost} | {trial} | {fault} |"
        )
        for attr in ("tests", "trials", "faults", "survived", "rows_lost"):
            setattr(total, attr, getattr(total, attr) + getattr(g, attr))
    lines.append(
        f"| **total** | {total.tests} | {total.trials} | {total.faults} | {total.survived} | {total.rows_lost} | | |"
    )
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not GROUPS:
        return
    tr = terminalreporter
    tr.section("reliability")
    for line in table():
        tr.write_line(line)
    for name, g in GROUPS.items():
        for note in g.notes:
            tr.write_line(f"{name}: {note}")
    target = os.environ.get("HFADVISOR_RELIABILITY_REPORT")
    path = Path(target) if target else Path(config._tmp_path_factory.getbasetemp()) / "reliability.json"  # type: ignore[attr-defined]
    path.write_text(json.dumps({name: asdict(g) for name, g in GROUPS.items()}, indent=1) + "\n")
    tr.write_line(f"reliability figures saved to {path}")
