"""Text clean-up shared by the stages: first line, quotes, list markers, control characters."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed model answer, or why it was rejected: model output is untrusted input."""

    value: T | None = None
    reason: str | None = None  # reject code (see validate.REASONS) when value is None
    detail: str = ""  # short human note (what was seen), never the whole answer

    @property
    def ok(self) -> bool:
        return self.value is not None


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d{1,3}[.)]|\(\d{1,3}\))\s+")
_QUOTES = "\"'`“”‘’«»"


def strip_control(text: str) -> str:
    """Drop control and invisible formatting characters (keeps newlines and tabs)."""
    return _CONTROL.sub("", unicodedata.normalize("NFC", text))


def first_line(text: str) -> str:
    """The first non-empty line of a model answer."""
    for line in strip_control(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def strip_label(line: str, labels: tuple[str, ...]) -> str:
    """Remove a leading list marker and a leading `Label:` the model may repeat from the prompt."""
    line = _BULLET.sub("", line).strip()
    lowered = line.lower()
    for label in labels:
        if lowered.startswith(label.lower() + ":"):
            line = line[len(label) + 1 :].strip()
            break
    return line


def strip_quotes(line: str) -> str:
    line = line.strip()
    while len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    if line.count('"') == 1 and line[0] == '"':  # an opening quote whose closing one was cut off
        line = line[1:].strip()
    return line


def normalize(text: str) -> str:
    """Case, punctuation and whitespace folded: two texts equal here are near-exact duplicates."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", text))


def words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])
