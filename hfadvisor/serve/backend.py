"""What a text-generation backend must provide for the TGI-protocol server.

The server (`app.py`) speaks HTTP; a backend only turns prompts into text. The embedded
SmolLM2 backend and the scripted backend used by the tests both implement this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field


class GenerationRequest(BaseModel):
    prompt: str
    max_new_tokens: int = 20
    temperature: float | None = None  # None or 0 → greedy
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    truncate: int | None = None  # keep only the last N prompt tokens (TGI's `truncate`)
    # Constrained decoding (TGI's `grammar`, OpenAI's `response_format`): at most one is set.
    # `json_schema={}` means any JSON object (`json_object` without a schema).
    json_schema: dict[str, Any] | None = None
    regex: str | None = None

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.regex is not None


class Generation(BaseModel):
    text: str
    generated_tokens: int
    prompt_tokens: int
    finish_reason: Literal["length", "eos_token", "stop_sequence"]


class Backend(Protocol):
    model_id: str
    max_input_tokens: int
    max_total_tokens: int

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        """Render chat messages to a prompt string with the model's own chat template."""
        ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[str | Generation]:
        """Yield the generated text piece by piece, then one final `Generation` with the totals.

        The final item lets the server fill TGI's last stream event (finish reason, token
        counts); a backend that cannot know them may omit it and the server counts pieces.
        """
        ...
