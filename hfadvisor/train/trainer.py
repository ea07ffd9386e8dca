"""Fine-tune a model on a run's data with TRL's `SFTTrainer` and a PEFT LoRA adapter.

QLoRA (4-bit NF4 base through bitsandbytes) on a CUDA device, as the paper's reference code;
plain LoRA over a full-precision base on CPU. Checkpoints go to `OUTPUT/checkpoint-N` every
`save_steps` and at the end, so `resume=True` continues from the last one; the adapter (and with
`merge` a merged model in `OUTPUT/merged`) is saved with a model card, then optionally pushed.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hfadvisor.deps import require
from hfadvisor.errors import ConfigError, HubError, MissingDependencyError
from hfadvisor.train.config import CONFIG_FILE, TrainConfig
from hfadvisor.train.data import EXPORT_DIRNAME, TrainData, check_source, prepare, resolve_export

RESULT_FILE = "train_result.json"
MERGED_DIRNAME = "merged"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# For a base model without a chat template: the reference code's prompt format, ending in EOS so
# the fine-tuned model learns to stop.
REFERENCE_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}You are a helpful assistant. {% endif %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }} "
    "{% elif m['role'] == 'user' %}USER: {{ m['content'] }} "
    "{% else %}ASSISTANT: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass
class TrainResult:
    """What one `train` call did (`train_result.json` is its `to_dict()`)."""

    output_dir: str
    model_dir: str  # the adapter (the output dir) or the merged model
    base_model: str
    device: str
    quantized: bool
    global_step: int
    steps_this_run: int
    resumed_from: str | None
    train_rows: int
    train_loss: float | None
    eval_loss: float | None
    seconds_per_step: float | None  # mean optimizer step this run (forward+backward × grad_accum + update)
    tokens_this_run: int  # tokens in the batches seen this run (padding excluded)
    tokens_per_second: float | None  # tokens_this_run / time spent in optimizer steps
    pushed: str | None = None  # "repo_id@commit"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_checkpoint(out: Path) -> Path | None:
    """The `checkpoint-N` with the highest N (what the Trainer resumes from)."""
    found = [(int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(found)[1] if found else None


def resolve_base(spec: str | None) -> str:
    """A local model folder (absolute path) or a Hub id; None is the embedded SmolLM2 (converted once)."""
    if spec is None:
        from hfadvisor.serve.model import ensure_model

        return str(ensure_model())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"--base-model {spec}: not a transformers model folder (no config.json)")
        return str(path.resolve())
    if _HUB_ID.fullmatch(spec):
        return spec
    raise ConfigError(
        f"--base-model {spec}: no such folder; give a local transformers model folder or a Hub id like org/name"
    )


def _device(quantize: str) -> tuple[str, bool]:
    """("cuda"|"cpu", 4-bit?) for `--quantize`; QLoRA needs CUDA and bitsandbytes."""
    import torch

    cuda = torch.cuda.is_available()
    four_bit = quantize == "4bit" or (quantize == "auto" and cuda)
    if four_bit and not cuda:
        raise ConfigError("--quantize 4bit needs a CUDA GPU (bitsandbytes NF4); on CPU use --quantize none (LoRA)")
    if four_bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "QLoRA (--quantize 4bit, the default on a GPU) needs bitsandbytes: pip install bitsandbytes "
                "(or pass --quantize none for plain LoRA)"
            ) from None
    return ("cuda" if cuda else "cpu"), four_bit


def _check_output(out: Path, config: TrainConfig, resume: bool) -> None:
    if resume:
        before = TrainConfig.stored(out) if out.is_dir() else None
        if before is None or last_checkpoint(out) is None:
            raise ConfigError(f"--resume: {out} has no checkpoint to resume from: train without --resume")
        config.check_resume(before)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        if last_checkpoint(out) is not None:
            raise ConfigError(f"{out} holds an earlier training: pass --resume to continue it, or a new --output")
        if (out / CONFIG_FILE).is_file():
            raise ConfigError(
                f"{out} holds a training stopped before its first checkpoint (nothing to resume): delete it "
                "or choose a new --output"
            )
        raise ConfigError(f"{out} exists and is not empty: choose a new --output directory")


def _check_hub(repo_id: str, private: bool, token: str | None) -> Any:
    """Fail before training on a bad repo id, a missing token or a visibility clash; returns the HfApi."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from hfadvisor.hub.errors import describe

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ConfigError(f"--push-to-hub {repo_id!r}: give a Hub repo id like user/name") from None
    token = token or get_token()
    if not token:
        raise HubError("--push-to-hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        is_private = api.repo_info(repo_id, repo_type="model").private
    except Exception as exc:
        raise HubError(describe(exc, endpoint=api.endpoint, repo_id=repo_id, token=token)) from None
    if private and is_private is False:
        raise HubError(f"{repo_id} is public: make it private on the Hub, or pass --public to publish there")
    return api


class _Meter:
    """A TrainerCallback timing each optimizer step of this run (model loading and saving excluded)."""

    def __init__(self) -> None:
        self.start_step: int | None = None
        self.durations: list[float] = []
        self._t = 0.0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        meter = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if meter.start_step is None:
                    meter.start_step = state.global_step  # after a resume: the checkpoint's step
                meter._t = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                meter.durations.append(time.perf_counter() - meter._t)

        return Callback()


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    return next((float(h[key]) for h in reversed(history) if key in h), None)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    push_to_hub: str | None = None,
    private: bool = True,
    token: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune `config.base_model` on `config.data`; see the module docstring.

    Args:
        config: the job (`TrainConfig.build` validates flags).
        resume: continue from the last checkpoint in `config.output_dir` (same data/model/LoRA settings).
        push_to_hub: a model repo to upload the adapter (or merged model) and its card to.
        private: create the repo private (the default); an existing public repo is refused unless False.
        token: Hub token (default: HF_TOKEN or the login); never written anywhere.
        progress: show transformers' progress bar.

    Raises:
        ConfigError: bad data, output directory, base model or settings. MissingDependencyError: no trl/peft
        (or bitsandbytes for QLoRA). HubError: the push failed (the trained model stays on disk).
    """
    require("train", feature="hfadvisor train")
    out = Path(config.output_dir).expanduser().resolve()
    source = Path(config.data).expanduser()
    config = config.model_copy(
        update={
            "data": str(source.resolve()),
            "output_dir": str(out),
            "base_model": resolve_base(config.base_model),
        }
    )
    check_source(source)
    _check_output(out, config, resume)
    device, four_bit = _device(config.quantize)
    api = _check_hub(push_to_hub, private, token) if push_to_hub else None
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        export_dir = resolve_export(source, out, system=config.system, reuse=resume)
        data = prepare(
            export_dir,
            mix_with=config.mix_with,
            mix_ratio=config.mix_ratio,
            mix_split=config.mix_split,
            seed=config.seed,
            evaluate=config.evaluate,
        )
        trainer, tokenizer = _trainer(config, data, device, four_bit, progress)
    except BaseException:
        if created:  # nothing half-written: a failed start leaves no output directory behind
            shutil.rmtree(out, ignore_errors=True)
        elif not resume:
            shutil.rmtree(out / EXPORT_DIRNAME, ignore_errors=True)
        raise
    config.save(out)
    meter = _Meter()
    trainer.add_callback(meter.callback())
    resumed_from = last_checkpoint(out) if resume else None
    trainer.train(resume_from_checkpoint=str(resumed_from) if resumed_from else None)
    history = trainer.state.log_history
    eval_loss = trainer.evaluate()["eval_loss"] if data.eval is not None else None
    trainer.save_model(str(out))  # adapter_config.json + adapter_model.safetensors + tokenizer
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or _last(history, "num_tokens") or 0)
    busy = sum(meter.durations)
    result = TrainResult(
        output_dir=str(out),
        model_dir=str(out / MERGED_DIRNAME if config.merge else out),
        base_model=config.base_model or "",
        device=device,
        quantized=four_bit,
        global_step=trainer.state.global_step,
        steps_this_run=len(meter.durations),
        resumed_from=resumed_from.name if resumed_from else None,
        train_rows=len(data.train),
        train_loss=_last(history, "loss"),
        eval_loss=eval_loss,
        seconds_per_step=statistics.fmean(meter.durations) if meter.durations else None,
        tokens_this_run=tokens,
        tokens_per_second=tokens / busy if busy > 0 else None,
        notes=list(data.notes),
    )
    del trainer
    if config.merge:
        _merge(config.base_model or "", out, out / MERGED_DIRNAME, device, tokenizer)
    _write_card(config, data, result)
    if api is not None and push_to_hub:
        result.pushed = _push(api, push_to_hub, Path(result.model_dir), data, config)
    import json

    (out / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return result


def _trainer(config: TrainConfig, data: TrainData, device: str, four_bit: bool, progress: bool) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    base = config.base_model or ""
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or ["not found"])[0][:200]
        raise ConfigError(f"--base-model {base}: cannot load its tokenizer ({first})") from None
    if not tokenizer.chat_template:
        tokenizer.chat_template = REFERENCE_TEMPLATE
    cuda = device == "cuda"
    if config.threads:  # on a shared CPU, fewer threads than cores avoids spinning threads fighting for them
        torch.set_num_threads(config.threads)
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = (torch.bfloat16 if bf16 else torch.float16) if cuda else torch.float32
    quantization = None
    if four_bit:
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=False
        )
    args = SFTConfig(
        output_dir=config.output_dir,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        max_grad_norm=config.max_grad_norm,
        max_length=config.max_length,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="no",
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        use_cpu=not cuda,
        bf16=bf16,
        fp16=cuda and not bf16,
        gradient_checkpointing=cuda,  # memory for 7B models on a GPU; on CPU it only costs time
        optim="paged_adamw_32bit" if four_bit else "adamw_torch",
        model_init_kwargs={"dtype": dtype},
        disable_tqdm=not progress,
    )
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        trainer = SFTTrainer(
            model=base,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            processing_class=tokenizer,
            peft_config=peft_config,
            quantization_config=quantization,
        )
    except OSError as exc:
        first = (str(exc).strip().splitlines() or ["not found"])[0][:200]
        raise ConfigError(f"--base-model {base}: cannot load it ({first})") from None
    return trainer, tokenizer


def _merge(base: str, adapter: Path, target: Path, device: str, tokenizer: Any) -> None:
    """Fold the adapter into a full-precision copy of the base (never into 4-bit weights) and save it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if target.exists():
        shutil.rmtree(target)
    merged.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def _base_id(base: str) -> str | None:
    """The base model's Hub id: the id itself, or the embedded SmolLM2's (a local folder has none)."""
    from hfadvisor.serve.model import default_model_dir

    if _HUB_ID.fullmatch(base) and not Path(base).exists():
        return base
    if Path(base) == default_model_dir().resolve():
        from hfadvisor.train.card import EMBEDDED_ID

        return EMBEDDED_ID
    return None


def _write_card(config: TrainConfig, data: TrainData, result: TrainResult) -> None:
    from hfadvisor.train.card import render

    out = Path(result.output_dir)
    base_id = _base_id(result.base_model)
    render(config, data, result, base_id=base_id, merged=False).save(out / "README.md")
    if config.merge:
        render(config, data, result, base_id=base_id, merged=True).save(out / MERGED_DIRNAME / "README.md")


def _push(api: Any, repo_id: str, folder: Path, data: TrainData, config: TrainConfig) -> str:
    """One commit with the model, its tokenizer and card (no checkpoints, no export copy)."""
    from hfadvisor.hub.errors import describe

    run = str(data.manifest.get("run_id", ""))[:8]
    message = f"hfadvisor train: LoRA on run {run} rounds 0..{data.manifest.get('upto_round')}"
    try:
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            commit_message=message,
            ignore_patterns=["checkpoint-*/**", f"{EXPORT_DIRNAME}/**", f"{MERGED_DIRNAME}/**", ".*", CONFIG_FILE],
        )
    except Exception as exc:
        raise HubError(
            describe(exc, endpoint=api.endpoint, repo_id=repo_id, token=api.token)
            + " (the trained model is saved locally; re-run with --resume to push again)"
        ) from None
    return f"{repo_id}@{info.oid}"
