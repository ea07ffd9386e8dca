"""Stage 2: one new query aimed at the weakness, from a few pool examples."""

from __future__ import annotations

from collections.abc import Sequence

from hfadvisor.presets import Preset
from hfadvisor.stages.text import Parsed, first_line, strip_label, strip_quotes


def build_prompt(preset: Preset, style: str, examples: Sequence[dict[str, str]], weakness: str) -> str:
    return preset.render(style, "generate", examples=list(examples), weakness=weakness)


def parse(text: str) -> Parsed[str]:
    """First line, list markers, echoed `Request:` labels and surrounding quotes stripped."""
    line = strip_quotes(strip_label(first_line(text), ("request", "query", "prompt", "question", "user")))
    return Parsed(line) if line else Parsed(reason="empty")
