"""Running the TGI-protocol server: in the foreground (`hfadvisor serve`) or as a child process.

Why a child process for `hfadvisor run` without `--endpoint`: the loop then reaches the embedded
model over HTTP exactly as it reaches a remote TGI (same client, retries, timeouts), and the
model's CPU-bound generation never shares an event loop or the GIL with the loop itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hfadvisor.errors import EndpointError

if TYPE_CHECKING:
    from hfadvisor.serve.embedded import EmbeddedBackend

DEFAULT_MAX_BATCH_SIZE = 16


def build_backend(
    model: str | None = None, *, tiny: bool = False, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
) -> EmbeddedBackend:
    """The embedded SmolLM2 (default), a local transformers folder, or the tiny random test model."""
    from hfadvisor.serve.embedded import EmbeddedBackend, tiny_random_backend

    if tiny:
        return tiny_random_backend(max_batch_size=max_batch_size)
    return EmbeddedBackend.from_pretrained(model, max_batch_size=max_batch_size)


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    model: str | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    log_level: str = "info",
    *,
    tiny: bool = False,
    max_concurrent_requests: int = 128,
    fd: int | None = None,
    exit_with_parent: bool = False,
    grammar: bool = True,
) -> None:
    """Load the model, then serve TGI's protocol until interrupted (blocking).

    The model is loaded before the socket answers, so `GET /health` == 200 means ready. `fd` is
    an already-listening socket inherited from a parent (race-free port choice for child servers);
    `exit_with_parent` stops the server if that parent dies without terminating it (SIGKILL).
    `grammar=False` refuses structured output with TGI's 422, like TGI's `--disable-grammar-support`.
    """
    import uvicorn

    from hfadvisor.serve.app import create_app

    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    backend = build_backend(model, tiny=tiny, max_batch_size=max_batch_size)
    app = create_app(backend, max_concurrent_requests=max_concurrent_requests, grammar=grammar)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    server = uvicorn.Server(config)
    if exit_with_parent:
        _watch_parent(server)
    if fd is None:
        print(f"hfadvisor: serving {backend.model_id} on http://{host}:{port}", file=sys.stderr, flush=True)
        server.run()
    else:
        sock = socket.socket(fileno=fd)
        server.run(sockets=[sock])


def _watch_parent(server: object) -> None:
    """Ask uvicorn to exit once this process is re-parented, i.e. its parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        server.should_exit = True  # type: ignore[attr-defined]

    threading.Thread(target=watch, name="hfadvisor-parent-watch", daemon=True).start()


def _health_ok(url: str, timeout: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def embedded_endpoint(
    model: str | None = None,
    startup_timeout: float = 600,
    *,
    tiny: bool = False,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    quiet: bool = False,
    grammar: bool = True,
) -> Iterator[str]:
    """Run `python -m hfadvisor.serve` as a child on a free local port and yield its base URL.

    Waits until `GET /health` answers 200 (the first run fetches and converts the model, about a
    minute; its progress lines are echoed to stderr unless `quiet`). The child is terminated on
    exit, including on exceptions and KeyboardInterrupt.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cmd = [sys.executable, "-m", "hfadvisor.serve", "--fd", str(sock.fileno()), "--exit-with-parent"]
    cmd += ["--log-level", "warning"]
    cmd += ["--max-batch-size", str(max_batch_size)]
    if model:
        cmd += ["--model", model]
    if tiny:
        cmd.append("--tiny")
    if not grammar:
        cmd.append("--no-grammar")
    tail: deque[str] = deque(maxlen=50)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=[sock.fileno()],
            env=env,
        )
    finally:
        sock.close()  # the child holds its own copy of the listening socket
    reader = threading.Thread(target=_pump, args=(child, tail, quiet), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not _health_ok(url, timeout=2):
            if child.poll() is not None:
                reader.join(timeout=2)
                raise EndpointError(
                    f"the embedded model server exited with code {child.returncode}: {_last_line(tail)}"
                )
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"the embedded model server was not ready after {startup_timeout:.0f} s: {_last_line(tail)}"
                )
            time.sleep(0.2)
        yield url
    finally:
        _stop(child)
        reader.join(timeout=2)


def _pump(child: subprocess.Popen[bytes], tail: deque[str], quiet: bool) -> None:
    """Keep the child's last stderr lines (for error messages); echo its progress lines."""
    assert child.stderr is not None
    for raw in child.stderr:
        line = raw.decode("utf-8", "replace").rstrip()
        if not line:
            continue
        tail.append(line)
        if not quiet and line.startswith("hfadvisor:") and not line.startswith("hfadvisor: error:"):
            print(line, file=sys.stderr, flush=True)


def _last_line(tail: deque[str]) -> str:
    return tail[-1] if tail else "no output on stderr"


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
