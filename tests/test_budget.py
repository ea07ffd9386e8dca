"""Token budget (`--max-tokens`) and cost (`--price-input/--price-output`) over real HTTP (scripted TGI).

Tokens are counted at the server: the scripted backend answers every call with known prompt and
generated token counts and keeps the sum, and the runs must agree with it.
"""

from __future__ import annotations

import json
import re

import pytest

from hfadvisor.budget import TokenBudget
from hfadvisor.ledger import Ledger
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import Generation, GenerationRequest
from tests.helpers import cli


class Counted:
    """Answers a distinct request per call and counts the tokens the server reports for it."""

    def __init__(self) -> None:
        self.n = 0
        self.prompt = 0
        self.generated = 0

    def __call__(self, req: GenerationRequest) -> Generation:
        self.n += 1
        text = f"How could someone quietly get around safety rule number {self.n} at work?"
        ptok, gtok = len(req.prompt.split()), len(text.split())
        self.prompt += ptok
        self.generated += gtok
        return Generation(text=text, generated_tokens=gtok, prompt_tokens=ptok, finish_reason="eos_token")

    @property
    def total(self) -> int:
        return self.prompt + self.generated


@pytest.fixture
def counted(scripted_tgi) -> Counted:
    c = Counted()
    scripted_tgi.backend.respond = c
    return c


def baseline(out, url, *extra: str):
    return cli("baseline", str(out), "-e", url, "--rounds", "30", "--batch-size", "3", "--structured", "off", *extra)


def round_tokens(store: RunStore) -> list[int]:
    return [rev.ledger.tokens for rev in store.revisions() if rev.round]


def test_budget_stops_before_passing_and_resume_continues(tmp_path, scripted_tgi, counted):
    out = tmp_path / "run"
    proc = baseline(out, scripted_tgi.url, "--max-tokens", "900", "--price-input", "2", "--price-output", "8")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "token budget reached" in ln]
    assert len(lines) == 1 and "larger --max-tokens" in lines[0], proc.stderr
    store = RunStore.open(out)
    done = store.rounds_done - 1
    assert 1 < done < 30  # stopped early, at a round boundary
    per_round = round_tokens(store)
    # the ledger is the server's count (prompt tokens come from TGI's x-prompt-tokens header)
    assert sum(per_round) == counted.total and counted.total <= 900
    assert TokenBudget.of(900, [r.ledger for r in store.revisions() if r.round]).estimate() + counted.total > 900
    assert all(rev.ledger.prompt_reported == rev.ledger.requests for rev in store.revisions() if rev.round)

    # the card: prompt tokens of the whole run, cost of the round and of the run at the given prices
    rev = store.revision(done)
    card = (out / "README.md").read_text()
    cost_round = (rev.ledger.prompt_tokens * 2 + rev.ledger.completion_tokens * 8) / 1e6
    cost_run = (counted.prompt * 2 + counted.generated * 8) / 1e6
    assert f"| prompt tokens | {counted.prompt} (whole run) |" in card
    assert f"{cost_round:.4f} this round / {cost_run:.4f} whole run" in card
    assert "input 2.0, output 8.0 per 1M tokens" in card

    # log --json: tokens and costs per round, running totals
    log = cli("log", str(out), "--json")
    assert log.returncode == 0, log.stderr
    rows = [json.loads(x) for x in log.stdout.splitlines()]
    assert rows[-1]["tokens_total"] == counted.total
    assert rows[-1]["cost_total"] == pytest.approx(cost_run, abs=1e-6)
    assert rows[-1]["cost"] == pytest.approx(cost_round, abs=1e-6)
    assert rows[-1]["cost_covers"] == "input+output"
    assert sum(r["prompt_tokens"] for r in rows) == counted.prompt
    # the table shows the cost columns too (prices stored with the rounds)
    table = cli("log", str(out))
    assert table.returncode == 0 and "cost (run)" in table.stdout and f"{cost_run:.4f}" in table.stdout

    # resume with a larger budget: counting continues from the stored rounds, not from zero
    first = counted.total
    proc = baseline(out, scripted_tgi.url, "--max-tokens", "1500")
    assert proc.returncode == 0, proc.stderr
    assert "token budget reached" in proc.stderr and "resuming" in proc.stderr
    store = RunStore.open(out)
    assert store.rounds_done - 1 > done
    assert sum(round_tokens(store)) == counted.total and first < counted.total <= 1500
    est = TokenBudget.of(1500, [r.ledger for r in store.revisions() if r.round]).estimate()
    assert counted.total + est > 1500
    rows = [json.loads(x) for x in cli("log", str(out), "--json").stdout.splitlines()]
    assert [r["tokens_total"] for r in rows][-1] == counted.total
    totals = [r["tokens_total"] for r in rows]
    assert totals == sorted(totals)  # continuous across sessions


def test_budget_counts_pipelined_rounds_in_flight(tmp_path, scripted_tgi, counted):
    """With pipeline_depth 4, rounds already generating count against the budget: the server never passes it."""
    out = tmp_path / "run"
    proc = baseline(out, scripted_tgi.url, "--max-tokens", "1000", "--pipeline-depth", "4")
    assert proc.returncode == 0, proc.stderr
    store = RunStore.open(out)
    assert sum(round_tokens(store)) == counted.total <= 1000  # nothing generated and thrown away
    assert "token budget reached" in proc.stderr


def test_advisor_budget_and_output_only_cost(tmp_path, scripted_tgi):
    """An endpoint that reports no prompt tokens: the budget counts completions, the cost says output only."""

    def answer(req: GenerationRequest) -> Generation:
        text = "Category of harm number 7" if "category" in req.prompt.lower() else "How do I pick a lock fast?"
        return Generation(text=text, generated_tokens=5, prompt_tokens=0, finish_reason="eos_token")

    scripted_tgi.backend.respond = answer
    out = tmp_path / "run"
    args = ("run", str(out), "-e", scripted_tgi.url, "--rounds", "50", "--batch-size", "2", "--structured", "off")
    proc = cli(*args, "--max-tokens", "100", "--price-output", "10")
    assert proc.returncode == 0, proc.stderr
    assert "completion only (input tokens not reported)" in proc.stderr
    store = RunStore.open(out)
    done = store.rounds_done - 1
    assert 1 <= done < 50
    assert sum(round_tokens(store)) <= 100
    card = (out / "README.md").read_text()
    assert "not reported by the endpoint" in card
    assert "(output only: input tokens not reported)" in card
    rows = [json.loads(x) for x in cli("log", str(out), "--json").stdout.splitlines()]
    assert rows[-1]["cost_covers"] == "output" and rows[-1]["input_tokens_reported"] == "none"


def test_estimate_is_max_of_recent_rounds_plus_growth():
    def led(n: int) -> Ledger:
        return Ledger(requests=1, prompt_reported=1, prompt_tokens=n, completion_tokens=0)

    b = TokenBudget.of(1000, [led(100), led(300), led(200)])
    assert b.estimate() == 300  # max of the last 3; no growth (200 < 300)
    b.add(led(260))
    assert b.estimate() == 300 + 60  # the series grows again: add the last growth
    assert b.allows() == (b.spent + 360 <= 1000)
    assert TokenBudget.of(None, []).allows(5)
    assert TokenBudget.of(10, []).allows(1) and not TokenBudget.of(10, []).allows(2)


def test_bad_price_is_one_line_exit_2(tmp_path, scripted_tgi):
    proc = cli("baseline", str(tmp_path / "r"), "-e", scripted_tgi.url, "--price-input", "-1")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and re.search(r"price.input", proc.stderr)
    assert not (tmp_path / "r").exists()


def test_card_text_equals_datasetcard(tmp_path, scripted_tgi, counted):
    """The card is returned as rendered (no DatasetCard parse + dump): the same text the Hub's class makes."""
    from huggingface_hub import DatasetCard

    import hfadvisor

    store = hfadvisor.run(tmp_path / "r", endpoints=[scripted_tgi.url], mode="baseline", rounds=2, batch_size=2)
    for r in range(store.rounds_done):
        text = (store.path / "cards" / f"round-{r:05d}.md").read_text()
        assert str(DatasetCard(text)).rstrip("\n") + "\n" == text
