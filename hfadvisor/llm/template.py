"""Chat templates rendered client side (HF conventions), for TGI's generate API.

Chat servers apply the model's template themselves; TGI's generate API takes raw text, so a
conversation is rendered here with the model's Jinja template (a file, or /info's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2.sandbox

from hfadvisor.errors import ConfigError


class ChatTemplate:
    """Renders chat messages with a model's Jinja chat template (HF conventions), client side."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        try:
            self.template = env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"chat template: syntax error line {e.lineno}: {e.message}") from None
        self.bos_token, self.eos_token = bos_token, eos_token

    def render(self, prompt: str | list[Message]) -> str:
        """A user prompt, or a whole conversation (e.g. a user turn and the answer a judge rates)."""
        return self.template.render(
            messages=as_messages(prompt),
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )


Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": ...}


def as_messages(prompt: str | list[Message]) -> list[Message]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _raise_template_error(message: str) -> None:
    raise ConfigError(f"chat template: {message}")


def load_chat_template(spec: str, server_info: dict[str, Any]) -> ChatTemplate:
    """`spec` is a Jinja file, or 'server' to use the template the server reports in /info."""
    if spec == "server":
        source = server_info.get("chat_template")
        if not source:
            raise ConfigError(
                "the server's /info has no chat_template: pass --chat-template FILE (the model's Jinja template) "
                "or use --api chat"
            )
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"chat template file {path} not found")
        source = path.read_text(encoding="utf-8")
    return ChatTemplate(source, server_info.get("bos_token") or "", server_info.get("eos_token") or "")
