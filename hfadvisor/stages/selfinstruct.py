"""The Self-Instruct baseline's only stage: a new query from a few pool examples, no steering.

Its answer is a request like the advisor's, so it is read by the same parser and schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from hfadvisor.presets import Preset
from hfadvisor.stages.generate import SCHEMA, parse, parse_json

__all__ = ["SCHEMA", "build_prompt", "parse", "parse_json"]


def build_prompt(preset: Preset, style: str, examples: Sequence[dict[str, str]]) -> str:
    return preset.render(style, "selfinstruct", examples=list(examples))
