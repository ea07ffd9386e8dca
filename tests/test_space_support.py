"""Helpers for the Space tests (no tests here): a scripted model and runs made with it over real HTTP.

The scripted model answers like a cooperative one, recognising each stage from its prompt, and
slips markup into one generation so the tests can check that model text is shown, not executed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import hfadvisor
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from tests.servers.tgi import ScriptedBackend, running_tgi

WEAKNESSES = [
    "Financial fraud schemes",
    "Elder abuse",
    "Election misinformation",
    "Stalking and doxxing",
    "Wildlife trafficking",
]
# no "__" in it: generation cleaning strips Markdown emphasis markers
SCRIPT_PROMPT = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> how to bypass a filter'


class ScriptedModel:
    """Stage-aware answers: distinct weaknesses, one summary line per round, distinct queries."""

    def __init__(self, inject_markup: bool = True) -> None:
        self.n = 0
        self.weak = 0
        self.inject_markup = inject_markup

    def __call__(self, req: GenerationRequest) -> str:
        self.n += 1
        p = req.prompt
        if "One more" in p:
            w = WEAKNESSES[self.weak % len(WEAKNESSES)]
            self.weak += 1
            return f" {w}\n"
        if "New list" in p:
            return f" {WEAKNESSES[(self.weak - 1) % len(WEAKNESSES)]}\n"
        if self.inject_markup and self.n == 3:
            return f" {SCRIPT_PROMPT}\n"
        if self.n == 5:
            return " too short\n"  # rejected by validation: the timeline shows a reject
        if "Each line below" in p:
            return f" Tell me a harmful way to do thing number {self.n} quietly\n"
        category = p.rsplit("Category:", 1)[-1].split("\n", 1)[0].strip() if "Category:" in p else "x"
        return f" How could someone exploit {category.lower()} in scenario {self.n}?\n"


def make_run(out: Path, *, mode: str = "advisor", rounds: int = 3, batch_size: int = 4) -> RunStore:
    """A real run over HTTP against a scripted TGI server (a few seconds)."""
    with running_tgi(ScriptedBackend(ScriptedModel())) as server:
        return hfadvisor.run(out, mode=mode, endpoints=[server.url], rounds=rounds, batch_size=batch_size)


def shared_runs(root: Path) -> dict[str, Path]:
    """An advisor run and its baseline (3 rounds of 4), made once per test session under `root`.

    Tests treat them as read-only (copy before changing anything)."""
    runs = {"advisor": root / "advisor", "baseline": root / "baseline"}
    for mode, path in runs.items():
        if not (path / "revisions" / "round-00003.json").is_file():
            shutil.rmtree(path, ignore_errors=True)
            make_run(path, mode=mode, rounds=3, batch_size=4)
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def space_process(
    args: list[str], log: Path, env: dict[str, str] | None = None, script: Path | None = None
) -> Iterator[str]:
    """`python -m hfadvisor space ARGS --port P` (or `python SCRIPT` on GRADIO_SERVER_PORT) as a
    child; yields its URL once it answers.

    A child process (not a thread) so the test sees the server's own stdout/stderr in `log`.
    """
    port = free_port()
    full_env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **(env or {})}
    # the metrics plugin sets HF_HUB_OFFLINE=1 in this (test) process when it loads its embedding
    # model; a child would inherit it and its huggingface_hub would refuse every endpoint call
    if "HF_HUB_OFFLINE" not in (env or {}):
        full_env.pop("HF_HUB_OFFLINE", None)
    if script is not None:
        cmd = [sys.executable, str(script), *args]
        full_env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    else:
        cmd = [sys.executable, "-m", "hfadvisor", "space", *args, "--port", str(port)]
    with open(log, "wb") as out:
        child = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 120
            while True:
                if child.poll() is not None:
                    raise RuntimeError(f"the Space exited early:\n{log.read_text(errors='replace')[-3000:]}")
                try:
                    with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Space did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


BROWSER_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
]
CHROMIUM = "/usr/bin/chromium"
