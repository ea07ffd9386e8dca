"""Small helpers shared by the tests (no fixtures here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `python -m hfadvisor ARGS` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hfadvisor", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes, for before/after comparisons."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
