"""Timestamps and per-call seeds shared by the loop, `respond` and `evaluate`."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime


def now() -> str:
    """The current UTC time as ISO 8601 with milliseconds (the format of every record's timestamps)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def call_seed(base: int, *parts: object) -> int:
    """A per-call generation seed that is the same when a round is re-run after a crash."""
    digest = hashlib.blake2b(f"{base}|{'|'.join(map(str, parts))}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF
