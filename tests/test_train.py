"""`hfadvisor train`: SmolLM2-135M fine-tuned for a few LoRA steps on CPU, resumed, served, mixed, pushed.

The run and its responses come from scripted TGI servers over real HTTP; the general dataset and
the model repo live on the Hub-compatible test server; the trained adapter is served by a real
`hfadvisor serve --model` child and asked for one generation over HTTP. Sizes are tiny (batch 2,
64 tokens, 1 thread: on a shared 2-core machine two torch threads spinning against other jobs are
several times slower than one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest

import hfadvisor
from hfadvisor.errors import ConfigError
from hfadvisor.export import export
from hfadvisor.llm import EndpointSpec
from hfadvisor.respond import respond_run
from hfadvisor.serve.model import ensure_model
from hfadvisor.train import TrainConfig, train
from hfadvisor.train.data import as_completion, general_messages, general_wanted
from tests.helpers import cli, serving
from tests.servers.tgi import ScriptedBackend, running_tgi
from tests.test_respond import TEMPLATE, Generator

pytestmark = pytest.mark.slow
TINY = ["--batch-size", "2", "--grad-accum", "1", "--max-length", "64", "--threads", "1", "--logging-steps", "1"]
TINY_KW = {"batch_size": 2, "grad_accum": 1, "max_length": 64, "threads": 1, "logging_steps": 1}


def answer(req) -> str:
    user = req.prompt.split("<<user>> ", 1)[-1].split("\n", 1)[0]
    return f"I can't help with that. Asking '{user}' could hurt people; here is a safer resource instead."


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 2-round run answered by a target (`run`), the same run unanswered (`bare`), and its SFT export."""
    root = tmp_path_factory.mktemp("train")
    with running_tgi(ScriptedBackend(Generator())) as server:
        hfadvisor.run(root / "run", endpoints=[server.url], rounds=2, batch_size=3, metrics=False)
    shutil.copytree(root / "run", root / "bare")
    (root / "t.jinja").write_text(TEMPLATE)
    with running_tgi(ScriptedBackend(answer)) as target:
        respond_run(root / "run", EndpointSpec.of(target.url, chat_template=str(root / "t.jinja")), max_new_tokens=64)
    export(root / "run", root / "export")
    ensure_model()  # the converted SmolLM2 folder (about 40 s the first time on this machine)
    return {"root": root, "run": root / "run", "bare": root / "bare", "export": root / "export"}


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


def test_train_resume_and_serve_the_adapter(runs, tmp_path):
    out = tmp_path / "out"
    first = cli("train", str(runs["export"]), "-o", str(out), "--max-steps", "2", "--save-steps", "2", *TINY)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trained 2 steps to step 2" in first.stderr
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (32, 16, 0.1)
    assert adapter["base_model_name_or_path"] == str(ensure_model())

    # the card names the data (run, rounds, files) and the base model and settings
    manifest = json.loads((runs["export"] / "export.json").read_text())
    card = (out / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "library_name: peft" in card
    upto = manifest["upto_round"]
    assert manifest["run_id"] in card and f"rounds 0..{upto}" in card and f"`round-{upto:04d}`" in card
    assert all(digest[:16] in card for digest in manifest["files"].values())
    assert "r 32, alpha 16, dropout 0.1" in card and "2e-05" in card

    # resume: from checkpoint-2 to step 4, the first two steps are not trained again
    again = cli(
        "train", str(runs["export"]), "-o", str(out), "--max-steps", "4", "--save-steps", "2", "--resume", *TINY
    )
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((out / "train_result.json").read_text())
    assert (result["global_step"], result["steps_this_run"], result["resumed_from"]) == (4, 2, "checkpoint-2")
    assert result["tokens_this_run"] > 0 and result["seconds_per_step"] > 0
    before = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    after = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    losses = [(h["step"], h["loss"]) for h in after if "loss" in h]
    assert [s for s, _ in losses] == [1, 2, 3, 4]
    assert losses[:2] == [(h["step"], h["loss"]) for h in before if "loss" in h]  # continued, not restarted

    # the adapter folder is what `hfadvisor serve --model` loads (transformers + peft: base + LoRA)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert any("lora_A" in name for name, _ in loaded.named_modules())
    del loaded

    with serving(out) as url:
        from huggingface_hub import InferenceClient

        assert httpx2.get(f"{url}/info").json()["model_id"] == str(out)
        text = InferenceClient(base_url=url).text_generation("How do I stay safe online?", max_new_tokens=8)
        assert isinstance(text, str) and text.strip()


def test_train_on_a_run_mixed_with_hub_data_merged_and_pushed(runs, tmp_path, hub_server):
    import datasets

    general = [
        {"instruction": f"Name a colour number {i}.", "input": "" if i % 2 else "Be brief.", "output": f"Blue {i}."}
        for i in range(12)
    ]
    datasets.Dataset.from_list(general).push_to_hub("hf-tester/general", private=True)
    out = tmp_path / "model"
    config = TrainConfig.build(
        data=str(runs["run"]),
        output_dir=str(out),
        max_steps=1,
        mix_with="hf-tester/general",
        mix_ratio=0.4,
        merge=True,
        evaluate=False,
        warmup_ratio=0,  # with warm-up, the only step has learning rate 0 and the weights would not move
        **TINY_KW,
    )
    result = train(config, push_to_hub="hf-tester/safety-lora", progress=False)

    # a run directory is exported on the fly into the output; general rows fill 40 % of the mix
    manifest = json.loads((out / "export" / "export.json").read_text())
    advisor = manifest["splits"]["train"]
    mixed = general_wanted(advisor, 0.4)
    assert mixed == round(advisor * 0.4 / 0.6) and 0 < mixed <= len(general)
    assert result.train_rows == advisor + mixed and result.global_step == 1

    # --merge: a full model folder whose weights moved away from the base
    from safetensors.torch import load_file

    merged = load_file(out / "merged" / "model.safetensors")
    base = load_file(Path(ensure_model()) / "model.safetensors")
    key = next(k for k in merged if k.endswith("q_proj.weight"))
    assert merged[key].shape == base[key].shape and not (merged[key] == base[key]).all()
    assert f"{mixed} rows of `hf-tester/general`" in (out / "merged" / "README.md").read_text()

    # pushed: the merged model (with --merge) and its card, one private repo, no checkpoints, no token anywhere
    repo = hub_server.repo("hf-tester/safety-lora", "model")
    assert repo.private is True
    files = repo.files()
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= set(files)
    assert not any(p.startswith(("checkpoint-", "export/", "merged/")) for p in files)
    assert manifest["run_id"].encode() in files["README.md"] and b"library_name: transformers" in files["README.md"]
    assert result.pushed == f"hf-tester/safety-lora@{repo.resolve('main')}"
    secret = hub_server.token.encode()
    assert not any(secret in data for data in files.values())
    assert not any(secret in p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_general_rows_accepted_shapes():
    assert general_messages({"instruction": "Sum", "input": "1 2", "output": "3"}) == [
        {"role": "user", "content": "Sum 1 2"},
        {"role": "assistant", "content": "3"},
    ]
    assert general_messages({"prompt": "Hi", "response": "Hello"})[1] == {"role": "assistant", "content": "Hello"}
    chat = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert as_completion(general_messages({"messages": chat})) == {"prompt": chat[:1], "completion": chat[1:]}
    assert general_messages({"text": "no shape"}) is None
    assert as_completion([{"role": "user", "content": "a"}]) is None  # no answer: not a training row
    assert as_completion([*chat[:1], {"role": "assistant", "content": "  "}]) is None
    assert general_wanted(90, 0.1) == 10 and general_wanted(10, 0) == 0


def test_bad_input_is_one_line_and_writes_nothing(runs, tmp_path):
    new = tmp_path / "new"
    cases = {
        "does not exist": [str(tmp_path / "nope")],
        "neither an export": [str(runs["root"])],
        "has no responses yet": [str(runs["bare"])],
        "--base-model /nonexistent/model: no such folder": [str(runs["export"]), "--base-model", "/nonexistent/model"],
        "--mix-ratio 1.5": [str(runs["export"]), "--mix-ratio", "1.5"],
        "--quantize 4bit needs a CUDA GPU": [str(runs["export"]), "--quantize", "4bit"],
        "no checkpoint to resume from": [str(runs["export"]), "--resume"],
    }
    for expected, args in cases.items():
        line = _one_error_line(cli("train", *args, "-o", str(new), "--max-steps", "1"))
        assert expected in line, (expected, line)
        assert not new.exists(), expected  # nothing half-written
    held = tmp_path / "held"
    held.mkdir()
    (held / "train_config.json").write_text("{}")
    line = _one_error_line(cli("train", str(runs["export"]), "-o", str(held)))
    assert "stopped before its first checkpoint" in line  # --resume could not help: it says so
    (held / "checkpoint-3").mkdir()
    line = _one_error_line(cli("train", str(runs["export"]), "-o", str(held)))
    assert "pass --resume" in line
    assert sorted(p.name for p in held.iterdir()) == ["checkpoint-3", "train_config.json"]  # untouched
    with pytest.raises(ConfigError, match="--lora-dropout"):
        TrainConfig.build(data="x", output_dir="y", lora_dropout=1.0)
