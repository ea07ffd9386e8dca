"""Small helpers shared by the tests (no fixtures here)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2


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


@contextlib.contextmanager
def serving(model: Path) -> Iterator[str]:
    """`hfadvisor serve --model MODEL` (e.g. a trained adapter folder) on a free port; yields its URL once
    `/health` answers, stops it on exit. A server that dies or never comes up fails the test with its stderr."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "hfadvisor", "serve", "--model", str(model), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # a start-up guard (model load on a busy machine), not a timing assertion
            assert child.poll() is None, child.stderr.read()[-2000:] if child.stderr else ""
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise AssertionError(f"hfadvisor serve --model {model} did not come up")
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes, for before/after comparisons."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
