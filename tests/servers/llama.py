"""`llama_server`: llama.cpp's own `llama-server` over SmolLM2-135M, a server no one here wrote.

Why: every other text-generation server in the suite is ours (the scripted TGI protocol, the
embedded transformers server), so they share our reading of the protocols. llama.cpp's server
applies the model's real chat template (`--jinja`), answers the OpenAI API at `/v1` with `usage`,
honours `response_format` JSON schemas by grammar, and ignores the request's model name — the
client meets a third-party server exactly as users run one. The binary is built from source once
per machine (`.ci/llama-server-setup.sh`, ~6 min of 2 cores, cached in
`~/.cache/hfadvisor/llama-server/<version>/`); starting it takes about a second.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port
from tests.servers.provision import provided

ALIAS = "HuggingFaceTB/SmolLM2-135M-Instruct"


@contextlib.contextmanager
def running_llama_server(binary: str, model: str, log: Path, slots: int = 8) -> Iterator[str]:
    """Start `llama-server` on a free local port; yield its base URL once `GET /health` answers 200."""
    port = free_port()
    cmd = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-np", str(slots)]
    cmd += ["-c", str(2048 * slots), "--jinja", "--alias", ALIAS, "--no-webui"]
    # --no-repack: the native build's AMX path (CPUs that advertise AMX, e.g. in VMs) segfaults on
    # the first compute; -t 1: llama.cpp's threads spin-wait for each other, and on a shared,
    # oversubscribed machine 2 threads ran 14x slower per token than 1 (663 vs 47 ms).
    cmd += ["--no-repack", "-t", "1"]
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # a startup guard, not a timing assertion
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"llama-server exited with {proc.returncode}: {' | '.join(tail)}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not become healthy; log: {log}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def llama_server(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real llama-server (OpenAI API at `<url>/v1`), built and downloaded on first use."""
    binary, model = provided(pytestconfig, "llama_server")[-2:]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running_llama_server(binary, model, log) as url:
        yield url
