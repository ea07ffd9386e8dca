"""End to end on the real embedded model (SmolLM2-135M served by `hfadvisor serve`), as the README runs it."""

from __future__ import annotations

import datasets
import pytest

import hfadvisor
from hfadvisor.rundir.store import RunStore
from tests.helpers import cli


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
    store = RunStore.open(out)
    for rev in list(store.revisions())[1:]:
        assert rev.weakness  # the model named a weakness every round
        assert rev.ledger.requests >= 6 + 2
        assert rev.ledger.completion_tokens > 0
    card = (out / "README.md").read_text()
    assert "Content warning" in card and store.last.weakness.split()[0] in card
    assert datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c")).num_rows == ds.num_rows
    log = cli("log", str(out))
    assert log.returncode == 0 and store.last.weakness.split()[0] in log.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hfadvisor_serve_then_run_over_the_chat_api(tmp_path):
    """`hfadvisor serve` is a TGI-protocol server any client can use: here `run --api chat` against it."""
    import os
    import subprocess
    import sys
    import time

    import httpx2

    from tests.helpers import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hfadvisor", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr else ""
            try:
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.5)
        info = httpx2.get(f"{url}/info").json()
        assert info["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and info["chat_template"]
        out = tmp_path / "chat"
        # short generations: this checks the protocol and the structured path end to end, not quality
        # (under a JSON schema the 135M model writes inside its string up to the token limit)
        proc = cli(
            "run", "-o", str(out), "-e", f"{url}/v1", "--api", "chat", "--rounds", "1", "--batch-size", "4",
            "--sampling.generate.max-new-tokens", "96",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        store = RunStore.open(out)
        assert store.info.method["prompt_style"] == "instruct"
        rev = store.last
        assert rev.weakness and rev.ledger.requests >= 4 + 2 and rev.ledger.prompt_tokens > 0
        assert rev.rows + rev.rejects == 4
        assert rev.ledger.by_stage["generate"].structured == 4  # instruct prompts: JSON schema by grammar
    finally:
        server.terminate()
        server.wait(timeout=30)
