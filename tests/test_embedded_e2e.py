"""End to end on the real embedded model (SmolLM2-135M served by `hfadvisor serve`), as the README runs it."""

from __future__ import annotations

import datasets
import pytest
from helpers import cli

import hfadvisor


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_default_run_on_the_embedded_model(tmp_path):
    out = tmp_path / "demo"
    proc = cli("run", "--output", str(out), "--rounds", "2", "--batch-size", "6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done: 2 rounds" in proc.stderr
    ds = hfadvisor.load_run(out)
    assert set(ds["round"]) >= {0, 1} and ds.num_rows > 10
    generated = ds.filter(lambda r: r["source"] == "advisor")
    assert set(generated["model"]) == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert all(p.strip() and "\n" not in p for p in generated["prompt"])
    store = hfadvisor.api.RunStore.open(out)
    for rev in list(store.revisions())[1:]:
        assert rev.weakness  # the model named a weakness every round
        assert rev.ledger.requests >= 6 + 2
        assert rev.ledger.completion_tokens > 0
    card = (out / "README.md").read_text()
    assert "Content warning" in card and store.last.weakness.split()[0] in card
    assert datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c")).num_rows == ds.num_rows
    log = cli("log", str(out))
    assert log.returncode == 0 and store.last.weakness.split()[0] in log.stdout
