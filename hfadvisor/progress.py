"""Live progress for long runs: round, rows, requests/s, tokens and retries (rich)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from hfadvisor.ledger import Ledger
from hfadvisor.records import Revision


class _LedgerColumn(ProgressColumn):
    def __init__(self, view: RichObserver) -> None:
        super().__init__()
        self.view = view

    def render(self, task: Task) -> Text:
        ledger = self.view.ledger
        if ledger is None:
            return Text("")
        elapsed = max(time.monotonic() - self.view.t0, 1e-6)
        throttled = f"concurrency {ledger.concurrency} (overloaded ×{ledger.throttled}) · " if ledger.throttled else ""
        cost = ledger.cost(*self.view.prices)
        spend = f"cost {cost.label()} this session · " if cost else ""
        tokens = (
            f"{ledger.prompt_tokens}+{ledger.completion_tokens}" if ledger.prompt_reported else ledger.completion_tokens
        )
        return Text(
            f"{self.view.rows} rows · {ledger.requests / elapsed:.1f} req/s · {tokens} tok · {spend}"
            f"{ledger.retries} retries · {ledger.failures} failed · {throttled}{self.view.stage_name}",
            style="cyan",
        )


class RichObserver:
    """Implements the runner's Observer protocol with a rich progress bar and one log line per round."""

    def __init__(
        self, console: Console | None = None, prices: tuple[float | None, float | None] = (None, None)
    ) -> None:
        self.console = console or Console(stderr=True)
        self.prices = prices  # per 1M input/output tokens: the live cost (none given: no cost shown)
        self.ledger: Ledger | None = None
        self.rows = 0
        self.stage_name = "starting"
        self.t0 = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]round"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            _LedgerColumn(self),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("rounds", total=None)

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def attach(self, ledger: Ledger, rows: int, rounds_done: int) -> None:
        self.ledger = ledger
        self.rows = rows
        self.t0 = time.monotonic()
        self.progress.update(self.task, completed=max(rounds_done - 1, 0))

    def round_started(self, r: int, total: int) -> None:
        self.progress.update(self.task, total=total, completed=r - 1)

    def stage(self, name: str) -> None:
        self.stage_name = name

    def budget_stopped(self, message: str) -> None:
        self.stage_name = "stopped: token budget"

    def round_done(self, rev: Revision, rows_total: int) -> None:
        self.rows = rows_total
        self.progress.update(self.task, completed=rev.round)
        weakness = f" weakness={rev.targeted!r}" if rev.targeted else ""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(rev.reject_reasons.items()))
        cost = rev.ledger.cost(*self.prices)
        self.progress.console.print(
            f"round {rev.round}:{weakness} +{rev.rows} rows, {rev.rejects} rejected"
            f"{f' ({reasons})' if reasons else ''}, summary {rev.summary_source}, {rev.timings.total:.1f}s"
            f"{f', cost {cost.label()}' if cost else ''}",
            markup=False,
            highlight=False,
        )
