"""Structured answers: the stage's JSON schema in each server's dialect, and telling JSON from text.

Why dialects: TGI reads `grammar={"type": "json", "value": schema}` on its generate API and
`response_format={"type": "json", "value": schema}` on its Messages API; vLLM, llama.cpp and
OpenAI read `response_format={"type": "json_schema", "json_schema": {"name", "schema"}}`.
"""

from __future__ import annotations

import json
from typing import Any


def tgi_grammar(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json", "value": schema}


def response_format(schema: dict[str, Any], dialect: str) -> dict[str, Any]:
    """`dialect`: "tgi" (released TGI wants `value`, not OpenAI's nesting) or "openai"."""
    if dialect == "tgi":
        return tgi_grammar(schema)
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def _body(text: str) -> str:
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    return body


def starts_json(text: str) -> bool:
    """Could the answer be the start of a JSON object (an answer cut off by a limit or a stop)?"""
    return _body(text)[:1] in ("{", "[")


def looks_json(text: str) -> bool:
    """Is the answer a JSON value (whitespace or one code fence around it tolerated)?"""
    body = _body(text)
    try:
        json.loads(body)
    except ValueError:
        return False
    return body[:1] in ("{", "[")
