"""`TrainConfig`: every setting of `hfadvisor train`, with the reference code's values as defaults.

The defaults are those of the paper's `train_target_model.py` (Data Advisor, Wang et al. 2024):
LoRA r 32, alpha 16, dropout 0.1 on every linear layer, 4-bit NF4 base when a GPU is there,
learning rate 2e-5, batch 1 with 32 gradient-accumulation steps, 1 epoch, cosine schedule with
10 % warm-up, gradient clipping at 0.1, sequences up to 1024 tokens. The stored copy
(`train_config.json`) is what `--resume` checks a restart against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hfadvisor.errors import ConfigError

CONFIG_FILE = "train_config.json"

# What a flag's value must be, for the one-line error (pydantic's wording names no flag).
_HINTS: dict[str, str] = {
    "mix_ratio": "the share of general instruction rows in the training mix: give a number in [0, 1), like 0.5",
    "lora_r": "a LoRA rank: a positive integer like 32",
    "lora_alpha": "a positive number like 16",
    "lora_dropout": "a probability in [0, 1), like 0.1",
    "learning_rate": "a positive number like 2e-5",
    "batch_size": "a positive integer",
    "grad_accum": "a positive integer",
    "epochs": "a positive number of epochs",
    "max_steps": "a positive number of optimizer steps",
    "max_length": "a positive number of tokens like 1024",
    "warmup_ratio": "a fraction in [0, 1)",
    "max_grad_norm": "a positive number",
    "save_steps": "a positive number of optimizer steps",
    "save_total_limit": "a positive number of checkpoints to keep",
    "logging_steps": "a positive number of steps",
    "quantize": "choose auto, none or 4bit",
    "threads": "a positive number of CPU threads",
}

# Settings a resumed training must share with the interrupted one (the rest, e.g. max_steps, may change).
FIXED_ON_RESUME = (
    "data",
    "base_model",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "quantize",
    "mix_with",
    "mix_ratio",
    "mix_split",
    "system",
    "max_length",
    "batch_size",
    "grad_accum",
    "seed",
)


class TrainConfig(BaseModel):
    """One fine-tuning job. Never holds a token: it is written next to the model as `train_config.json`."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="export directory (`hfadvisor export`) or run directory after `respond`")
    output_dir: str
    base_model: str | None = Field(None, description="local model folder or Hub id; None: the embedded SmolLM2")
    lora_r: int = Field(32, gt=0)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: str = "all-linear"  # the reference's find_all_linear_names (every Linear but lm_head)
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(1, gt=0)
    grad_accum: int = Field(32, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps (overrides epochs)")
    max_length: int = Field(1024, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    lr_scheduler: str = "cosine"
    max_grad_norm: float = Field(0.1, gt=0)
    quantize: Literal["auto", "none", "4bit"] = "auto"
    mix_with: str | None = Field(None, description="Hub id of a general instruction dataset to mix in")
    mix_ratio: float = Field(0.5, ge=0, lt=1)
    mix_split: str = "train"
    system: str | None = Field(None, description="system message (only when exporting a run directory on the fly)")
    save_steps: int = Field(100, gt=0)
    save_total_limit: int = Field(2, gt=0)
    logging_steps: int = Field(10, gt=0)
    evaluate: bool = True
    merge: bool = False
    seed: int = 0
    threads: int | None = Field(None, gt=0, description="CPU threads for torch; None: torch's default (one per core)")

    @classmethod
    def build(cls, **values: Any) -> TrainConfig:
        """Validate like the CLI: the first bad value becomes one `ConfigError` line naming its flag."""
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            flag = "--" + name.replace("_", "-")
            hint = _HINTS.get(name, first["msg"])
            raise ConfigError(f"{flag} {values.get(name)!r}: {hint}") from None

    def save(self, folder: Path) -> None:
        (folder / CONFIG_FILE).write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")

    @classmethod
    def stored(cls, folder: Path) -> TrainConfig | None:
        path = folder / CONFIG_FILE
        if not path.is_file():
            return None
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError):
            raise ConfigError(f"{path} is not a readable training config: train into a new --output") from None

    def check_resume(self, before: TrainConfig) -> None:
        """Refuse a resume whose data, model or LoRA settings differ: the checkpoint would not fit them."""
        for name in FIXED_ON_RESUME:
            old, new = getattr(before, name), getattr(self, name)
            if old != new:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{flag} is {new!r} but the interrupted training used {old!r}: resume with the same "
                    "setting, or train into a new --output"
                )
