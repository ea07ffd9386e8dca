"""The model card of a trained adapter (or merged model): which data, which base, which settings.

A fine-tuned model is only evidence for the paper's claim if one can tell exactly what it was
trained on, so the card names the run, its last round (the Hub tag a push of the run gives
it), the config hash and the sha256 of every data file of the export, next to every setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData

from hfadvisor.card import md

if TYPE_CHECKING:
    from hfadvisor.train.config import TrainConfig
    from hfadvisor.train.data import TrainData
    from hfadvisor.train.trainer import TrainResult

EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _row(name: str, value: Any) -> str:
    return f"| {name} | {value} |"


def _code(text: Any) -> str:
    """Inline code for ids, paths and numbers (backticks removed: they cannot be escaped in a span)."""
    return "`" + str(text).replace("`", "'") + "`"


def render(
    config: TrainConfig,
    data: TrainData,
    result: TrainResult,
    *,
    base_id: str | None,
    merged: bool,
) -> ModelCard:
    """The card for `config`'s output. `base_id`: the base model's Hub id when known (else only its folder)."""
    from hfadvisor.hub.publish import tag_name

    m = data.manifest
    meta = ModelCardData(
        base_model=base_id,
        library_name="transformers" if merged else "peft",
        pipeline_tag="text-generation",
        tags=["hfadvisor", "safety", "data-advisor", "trl", "sft", "lora", *(["qlora"] if result.quantized else [])],
        datasets=[config.mix_with] if config.mix_with and data.general_rows else None,
    )
    what = "merged model (LoRA weights folded into the base)" if merged else "LoRA adapter"
    method = "QLoRA (4-bit NF4 base, bitsandbytes)" if result.quantized else "LoRA (full-precision base)"
    files = "<br>".join(f"{_code(rel)} sha256 {_code(digest[:16])}…" for rel, digest in m.get("files", {}).items())
    upto = int(m.get("upto_round", -1))
    mix = (
        f"{data.general_rows} rows of {_code(config.mix_with)} (split {_code(config.mix_split)}, "
        f"ratio {config.mix_ratio}: {data.general_rows} of {data.advisor_rows + data.general_rows} train rows)"
        if config.mix_with and data.general_rows
        else "none"
    )
    steps = (
        f"max {config.max_steps} optimizer steps" if config.max_steps else f"{config.epochs:g} epoch(s)"
    ) + f" → {result.global_step} steps done"
    lines = [
        f"# {md(base_id or result.base_model)} fine-tuned on hfadvisor data ({what})",
        "",
        f"A {what} trained with TRL's `SFTTrainer` ({method}) on a safety-alignment dataset built by",
        "hfadvisor with the Data Advisor method (Wang et al. 2024). The loss covers",
        "the assistant responses only (prompt-completion format), as in the paper's reference code.",
        "",
        "## Training data",
        "",
        "| | |",
        "|---|---|",
        _row("hfadvisor run", f"{_code(m.get('run_id'))} ({md(str(m.get('mode')))})"),
        _row(
            "dataset revision",
            f"rounds 0..{upto} (Hub tag {_code(tag_name('round-', upto))} when the run is pushed)"
            if upto >= 0
            else "—",
        ),
        _row("run config hash", _code(m.get("config_hash"))),
        _row("responses by", md(m.get("response_model"))),
        _row("export splits", md(", ".join(f"{k} {v}" for k, v in m.get("splits", {}).items()))),
        _row("export files", files or "—"),
        _row("advisor train rows", data.advisor_rows),
        _row("mixed-in general data", mix),
        _row("validation rows", len(data.eval) if data.eval is not None else "not evaluated"),
        "",
        "## Settings",
        "",
        "| | |",
        "|---|---|",
        _row("base model", _code(base_id or result.base_model)),
        _row("method", method),
        _row(
            "LoRA",
            f"r {config.lora_r}, alpha {config.lora_alpha:g}, dropout {config.lora_dropout:g}, "
            f"modules {_code(config.target_modules)}",
        ),
        _row("learning rate", f"{config.learning_rate:g} ({md(config.lr_scheduler)}, warm-up {config.warmup_ratio:g})"),
        _row("batch", f"{config.batch_size} × {config.grad_accum} gradient accumulation"),
        _row("length", f"max {config.max_length} tokens"),
        _row("max grad norm", f"{config.max_grad_norm:g}"),
        _row("schedule", steps),
        _row("seed", config.seed),
        _row("device", md(result.device)),
        "",
        "## Results",
        "",
        "| | |",
        "|---|---|",
        _row("train loss (last logged)", _fmt(result.train_loss)),
        _row("validation loss", _fmt(result.eval_loss)),
        _row("seconds per optimizer step", _fmt(result.seconds_per_step)),
        _row("tokens per second", _fmt(result.tokens_per_second)),
        *([_row("resumed from", _code(result.resumed_from))] if result.resumed_from else []),
        *[f"\nNote: {md(n)}" for n in data.notes],
        "",
        "## Use",
        "",
        "```bash",
        "hfadvisor serve --model ./this-folder   # TGI protocol on http://127.0.0.1:8080",
        "```",
        "",
        "**Content warning**: the training prompts are harmful requests written for safety alignment.",
        "",
    ]
    return ModelCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines))


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"
