"""Pytest plugin: a real argilla-server 2.8.0 for the test session.

The server runs from its own venv (built by ``.ci/argilla-setup.sh``; it pins old pydantic/fastapi),
with its own ``redis-server`` and a fresh SQLite database in a temp ``ARGILLA_HOME_PATH``. Search is
served by the SQLite-backed engine in ``tests/servers/argilla_launcher/launcher.py``; an rq worker runs the
background jobs. Clients talk to it over HTTP only, e.g. with the unmodified argilla SDK.

Fixtures: ``argilla_server`` (session) and ``argilla_client`` (function, an owner ``argilla.Argilla``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.servers.provision import provided

if TYPE_CHECKING:
    import argilla

SERVERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = SERVERS_DIR.parent.parent
LAUNCHER = SERVERS_DIR / "argilla_launcher" / "launcher.py"

WORKSPACE = "argilla"
OWNER_USERNAME = "argilla"
OWNER_KEY = "owner.apikey"
ANNOTATOR_KEYS = {"annotator1": "annotator1.apikey", "annotator2": "annotator2.apikey"}
PASSWORD = "12345678"
START_TIMEOUT_S = 180.0
LOG_TAIL_LINES = 60

_CHILD_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


class ArgillaServerError(RuntimeError):
    """The test Argilla server failed to start, died, or answered a helper call with an error."""


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        with path.open(errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError as exc:
        return f"<no log at {path}: {exc}>"


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a child we started (its own process group), killing it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@dataclass
class ArgillaServer:
    """A running argilla-server: its URL, API keys, and small REST helpers."""

    url: str
    owner_key: str
    annotator_keys: dict[str, str]
    workspace: str
    home: Path
    log_path: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    logs: dict[str, Path] = field(default_factory=dict, repr=False)
    _http: requests.Session = field(default_factory=requests.Session, repr=False)
    _serve: tuple[list[str], dict[str, str]] | None = field(default=None, repr=False)  # (command, env)

    def __post_init__(self) -> None:
        """Never route loopback traffic through an environment proxy."""
        self._http.trust_env = False

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log."""
        return _tail(self.log_path, lines)

    def diagnostics(self) -> str:
        """Exit codes and log tails of every child process, for error messages."""
        parts = []
        for name, proc in self.processes.items():
            state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
            parts.append(f"--- {name} (pid {proc.pid}, {state}); last lines of {self.logs[name]}:\n")
            parts.append(_tail(self.logs[name]))
        return "".join(parts)

    def check_alive(self) -> None:
        """Raise :class:`ArgillaServerError` (with log tails) if a child process has died."""
        dead = [name for name, proc in self.processes.items() if proc.poll() is not None]
        if dead:
            raise ArgillaServerError(f"argilla test processes died: {dead}\n{self.diagnostics()}")

    def stop_server(self) -> None:
        """SIGKILL the HTTP server (redis, the worker and the SQLite home stay): an abrupt outage."""
        proc = self.processes["server"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def start_server(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start the HTTP server again on the same port over the same database; returns seconds to ready."""
        assert self._serve is not None, "the server was not started by the fixture"
        started = time.monotonic()
        _spawn(self, "server", self._serve[0], self._serve[1], self.home)
        _wait_ready(self, started + timeout)
        return time.monotonic() - started

    def request(
        self,
        method: str,
        path: str,
        *,
        api_key: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call the REST API (``path`` like ``/api/v1/me``) and return the decoded JSON body, if any."""
        try:
            resp = self._http.request(
                method,
                self.url + path,
                headers={"X-Argilla-Api-Key": api_key or self.owner_key},
                json=json,
                params=params,
                timeout=60,
            )
        except requests.RequestException as exc:
            self.check_alive()
            raise ArgillaServerError(f"{method} {path}: {exc}\n{self.diagnostics()}") from exc
        if resp.status_code >= 400:
            raise ArgillaServerError(
                f"{method} {path} -> HTTP {resp.status_code}: {resp.text}\n"
                f"--- last lines of {self.log_path}:\n{self.log_tail(20)}"
            )
        return resp.json() if resp.content else None

    def submit_response(
        self,
        record_server_id: Any,
        values: Mapping[str, Any],
        api_key: str,
        *,
        status: str = "submitted",
    ) -> dict[str, Any]:
        """``POST /api/v1/records/{id}/responses`` as the key's user; returns the created response.

        ``record_server_id`` is the server's record UUID (the SDK's ``record._server_id``, not
        ``record.id``). ``values`` maps question names to plain values (``{"harmful": "yes"}``);
        values already shaped as ``{"value": ...}`` are passed through.
        """
        body = {
            name: value if isinstance(value, dict) and "value" in value else {"value": value}
            for name, value in values.items()
        }
        return self.request(
            "POST",
            f"/api/v1/records/{record_server_id}/responses",
            api_key=api_key,
            json={"values": body, "status": status},
        )


def _write(config: pytest.Config, message: str) -> None:
    """Print a progress line to the terminal even while output is captured."""
    capture = config.pluginmanager.getplugin("capturemanager")
    ctx = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with ctx:
        sys.stderr.write(f"[argilla_server] {message}\n")
        sys.stderr.flush()


def _ensure_venv(config: pytest.Config) -> Path:
    """Run the idempotent setup script (installs redis-server + the venv when needed); return the venv."""
    return Path(provided(config, "argilla_server")[-1])


def _child_env(home: Path, redis_port: int) -> dict[str, str]:
    """Environment for the server-side processes."""
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
    env.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        ARGILLA_SEARCH_ENGINE="hfadvisor-sqlite",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",  # rich-formatted worker logs: keep lines whole
    )
    return env


def _spawn(server: ArgillaServer, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    """Start a child in its own process group, logging to ``<home>/<name>.log``."""
    log = server.home / f"{name}.log"
    server.logs[name] = log
    with log.open("ab") as out:  # appended: a restarted server keeps the earlier log
        server.processes[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def _wait_redis(server: ArgillaServer, port: int, deadline: float) -> None:
    """Wait until redis answers PING."""
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                return
        time.sleep(0.1)
    raise ArgillaServerError(f"redis did not answer on port {port}\n{server.diagnostics()}")


def _wait_ready(server: ArgillaServer, deadline: float) -> None:
    """Poll ``GET /api/v1/me`` with the owner key until it answers 200."""
    last = ""
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            resp = server._http.get(
                f"{server.url}/api/v1/me", headers={"X-Argilla-Api-Key": server.owner_key}, timeout=5
            )
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ArgillaServerError(f"argilla-server not ready at {server.url} ({last})\n{server.diagnostics()}")


@contextlib.contextmanager
def _no_proxy_for_loopback() -> Iterator[None]:
    """Make HTTP clients in this process (httpx in the SDK, requests) skip proxies for loopback."""
    saved = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    for key, value in saved.items():
        os.environ[key] = ",".join(filter(None, [value, "127.0.0.1", "localhost"]))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def argilla_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgillaServer]:
    """A real argilla-server 2.8.0 with owner ``argilla`` and annotators ``annotator1``/``annotator2``.

    All users belong to workspace ``argilla``. Keys: ``owner.apikey``, ``annotator1.apikey``,
    ``annotator2.apikey``. The database is fresh per session and shared by its tests: use unique
    dataset names.
    """
    config = request.config
    venv = _ensure_venv(config)
    python = str(venv / "bin" / "python")
    home = tmp_path_factory.mktemp("argilla-home")
    redis_port = http_port = _free_port()
    while http_port == redis_port:
        http_port = _free_port()
    server = ArgillaServer(
        url=f"http://127.0.0.1:{http_port}",
        owner_key=OWNER_KEY,
        annotator_keys=dict(ANNOTATOR_KEYS),
        workspace=WORKSPACE,
        home=home,
        log_path=home / "server.log",
    )
    env = _child_env(home, redis_port)
    started = time.monotonic()
    deadline = started + START_TIMEOUT_S
    with contextlib.ExitStack() as stack:
        stack.enter_context(_no_proxy_for_loopback())
        stack.callback(lambda: [_stop(p) for p in reversed(server.processes.values())])
        redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        redis_cmd += ["--appendonly", "no", "--dir", str(home), "--daemonize", "no"]
        _spawn(server, "redis", redis_cmd, env, home)
        _wait_redis(server, redis_port, deadline)

        users = [f"{OWNER_USERNAME}:owner:{OWNER_KEY}"]
        users += [f"{name}:annotator:{key}" for name, key in ANNOTATOR_KEYS.items()]
        boot_cmd = [python, str(LAUNCHER), "bootstrap", "--workspace", WORKSPACE, "--password", PASSWORD]
        boot_cmd += [arg for user in users for arg in ("--user", user)]
        boot = subprocess.run(
            boot_cmd, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        (home / "bootstrap.log").write_text(boot.stdout)
        if boot.returncode != 0:
            raise ArgillaServerError(f"argilla bootstrap failed ({boot.returncode}):\n{boot.stdout[-4000:]}")

        serve_cmd = [python, str(LAUNCHER), "serve", "--host", "127.0.0.1", "--port", str(http_port)]
        _spawn(server, "server", serve_cmd, env, home)
        server._serve = (serve_cmd, env)
        _spawn(server, "worker", [python, str(LAUNCHER), "worker"], env, home)
        _wait_ready(server, deadline)
        _write(config, f"argilla-server ready at {server.url} in {time.monotonic() - started:.1f} s (home {home})")
        yield server
        server.check_alive()


@pytest.fixture
def argilla_client(argilla_server: ArgillaServer) -> Iterator[argilla.Argilla]:
    """An ``argilla.Argilla`` SDK client logged in as the owner."""
    try:
        import argilla as rg
    except ImportError as exc:  # pragma: no cover - environment problem
        raise ArgillaServerError("the argilla SDK is missing: pip install -e '.[argilla]'") from exc
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    try:
        yield client
    finally:
        client.http_client.close()
