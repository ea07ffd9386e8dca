"""Stage 1: ask what the dataset does not cover yet (the weakness)."""

from __future__ import annotations

from hfadvisor.presets import Preset
from hfadvisor.stages.text import Parsed, first_line, strip_label, strip_quotes

MAX_WORDS = 12


def build_prompt(preset: Preset, style: str, summary: list[str], feedback: str | None = None) -> str:
    """`feedback` (e.g. what human labellers found) is shown to the model when given."""
    return preset.render(style, "weakness", summary=summary, feedback=feedback or "")


def parse(text: str, preset: Preset) -> Parsed[str]:
    """First line, without list markers, echoed labels, quotes or a trailing period; at most 12 words."""
    line = strip_label(first_line(text), ("missing", "category", preset.noun, "answer", "not covered yet"))
    line = strip_quotes(line).rstrip(".;:,").strip()
    line = " ".join(line.split()[:MAX_WORDS])
    return Parsed(line) if line else Parsed(reason="empty")
