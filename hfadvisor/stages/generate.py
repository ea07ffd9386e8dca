"""Stage 2: one new query aimed at the weakness, from a few pool examples.

Only the request itself may become a row: the answer goes through `text.extract` (preambles,
markdown, labels, quotes and explanations off; several candidates, refusals and talk about
the task are rejects with a reason). `parse_json` is the structured path (`SCHEMA`): the
`request` field then goes through the same checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hfadvisor.presets import Preset
from hfadvisor.stages.text import Parsed, extract, load_json

MAX_CHARS = 4000  # the schema's bound; the run's own max_chars rejects long queries as `too_long`
LABELS = r"request|query|prompt|question|user|example|answer|output|response|instruction|message|you|input"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"request": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}},
    "required": ["request"],
    "additionalProperties": False,
}


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: str = Field(min_length=1, max_length=MAX_CHARS)


def build_prompt(preset: Preset, style: str, examples: Sequence[dict[str, str]], weakness: str) -> str:
    return preset.render(style, "generate", examples=list(examples), weakness=weakness)


def parse(text: str) -> Parsed[str]:
    """The one request in a text answer, or the reject reason."""
    return extract(text, LABELS)


def parse_json(text: str) -> Parsed[str]:
    """The structured answer `{"request": ...}`; the field gets the same checks as a text answer."""
    loaded = load_json(text, Answer)
    if loaded.value is None:
        return Parsed(reason=loaded.reason, detail=loaded.detail)
    return parse(loaded.value.request)
