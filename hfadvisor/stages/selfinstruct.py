"""The Self-Instruct baseline's only stage: a new query from a few pool examples, no steering."""

from __future__ import annotations

from collections.abc import Sequence

from hfadvisor.presets import Preset
from hfadvisor.stages.generate import parse

__all__ = ["build_prompt", "parse"]


def build_prompt(preset: Preset, style: str, examples: Sequence[dict[str, str]]) -> str:
    return preset.render(style, "selfinstruct", examples=list(examples))
