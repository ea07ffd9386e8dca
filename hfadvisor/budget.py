"""The run's token budget (`--max-tokens N`): stop at a round boundary before the next round would pass N.

Counted: prompt + completion tokens of the run's committed rounds, rebuilt from the revisions,
so a resumed run keeps counting where it was (the budget is the run's, not the session's).
Prompt tokens count only where the server reports them (chat `usage`, TGI's `x-prompt-tokens`).

The next round's tokens are estimated as the **largest of the last 3 rounds plus the last
round-over-round growth** (when positive). Why the max and not the mean: a budget is a
ceiling, and with the mean the last round would pass it about half the time; why the last
few and the growth: an advisor round's prompts grow with the summary (one line per round),
so recent rounds are the best guide and the next one is larger still. The first round of a
run has nothing to estimate from: it runs, and the budget applies from the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hfadvisor.ledger import Ledger

WINDOW = 3


@dataclass
class TokenBudget:
    """Tokens spent per committed round, and whether `k` more rounds fit under `limit`."""

    limit: int | None
    rounds: list[int] = field(default_factory=list)  # tokens of each committed generated round, in order
    input_reported: bool = True  # False once a round's endpoint reported no prompt tokens

    @classmethod
    def of(cls, limit: int | None, ledgers: list[Ledger]) -> TokenBudget:
        budget = cls(limit)
        for ledger in ledgers:
            budget.add(ledger)
        return budget

    def add(self, ledger: Ledger) -> None:
        """Count one committed round."""
        self.rounds.append(ledger.tokens)
        if ledger.requests and ledger.input_reported != "all":
            self.input_reported = False

    @property
    def spent(self) -> int:
        return sum(self.rounds)

    def estimate(self) -> int | None:
        """Tokens the next round is expected to take (None: no round measured yet)."""
        if not self.rounds:
            return None
        recent = self.rounds[-WINDOW:]
        growth = self.rounds[-1] - self.rounds[-2] if len(self.rounds) > 1 else 0
        return max(recent) + max(growth, 0)

    def allows(self, k: int = 1) -> bool:
        """Whether `k` more rounds (the next one and those already generating) fit under the limit."""
        if self.limit is None:
            return True
        est = self.estimate()
        if est is None:  # nothing measured: the first round runs alone
            return k <= 1 and self.spent < self.limit
        return self.spent + k * est <= self.limit

    def message(self, rounds_done: int, rounds_planned: int) -> str:
        """The one line the CLI prints when the budget stopped the run."""
        counted = "prompt + completion" if self.input_reported else "completion only (input tokens not reported)"
        return (
            f"token budget reached: {self.spent:,} of {self.limit:,} tokens spent ({counted}) and the next round "
            f"needs about {self.estimate() or 0:,}; stopped after round {rounds_done} of {rounds_planned}. "
            "Resume with a larger --max-tokens to continue"
        )


def round_prices(price_input: float | None, price_output: float | None) -> dict[str, Any]:
    """The prices a round was costed at (cards, `log`): kept with it, since they may change per session."""
    if price_input is None and price_output is None:
        return {}
    return {"prices": {"input": price_input, "output": price_output}}
