"""Provision what a test server needs (a browser, redis + a venv, a binary) before the tests run.

Why here and not in CI: the README's test command alone must pass on a fresh machine, so the
suite installs what it needs itself, once per machine (the `.ci/*-setup.sh` scripts are
idempotent and cache their results) and only when a collected test needs it (by fixture name).
It runs after collection, before the first test: outside every test's timeout, since the
first llama-server build takes minutes. A file lock keeps parallel pytest sessions from running
the same script at once. The terminal gets one line before a step and one after; the script's
own output goes to a log. When provisioning cannot work (no root for apt-get, no network) the
tests that need it fail with one actionable line; the others run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# fixture name -> (setup script in .ci/, what the terminal is told before it runs)
NEEDS: dict[str, tuple[str | Path, str]] = {
    "chromium": ("browser-setup.sh", "browser tests: checking chromium"),
    "argilla_server": ("argilla-setup.sh", "Argilla tests: checking redis-server and the argilla-server venv"),
    "llama_server": (
        "llama-server-setup.sh",
        "llama.cpp tests: checking the llama-server binary (built once from source: ~6 min) and the SmolLM2 GGUF",
    ),
}
_RESULTS = pytest.StashKey[dict[str, "list[str] | str"]]()
# Exit code by which a setup script says "I printed the one-line fix on stderr's last line".
ACTIONABLE_EXIT = 3


def say(config: pytest.Config, message: str) -> None:
    """One line on the terminal, even while pytest captures the test's output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    ctx = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with ctx:
        sys.stderr.write(f"\n[provision] {message}\n")
        sys.stderr.flush()


def run_setup(config: pytest.Config, script: str | Path, doing: str, env: dict[str, str] | None = None) -> list[str]:
    """Run `.ci/<script>` (or a script path) under a machine-wide lock; return its stdout lines, or fail with one line.

    `doing` is what the terminal is told before the script starts (it may take minutes the first
    time, seconds afterwards). Its stderr is kept in `~/.cache/hfadvisor/provision/<script>.log`.
    """
    path = REPO_ROOT / ".ci" / script if isinstance(script, str) else script
    logs = Path(os.environ.get("HFADVISOR_TEST_CACHE", Path.home() / ".cache" / "hfadvisor")) / "provision"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{path.stem}.log"
    say(config, f"{doing} ({path.name}; log: {log})")
    started = time.monotonic()
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    with FileLock(str(logs / f"{path.stem}.lock")), log.open("w") as err:
        proc = subprocess.run(
            ["bash", str(path)], stdout=subprocess.PIPE, stderr=err, text=True, env=full_env, check=False
        )
    if proc.returncode != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        last = tail[-1].removeprefix(f"[{path.stem}] ") if tail else "no output"
        if proc.returncode == ACTIONABLE_EXIT:
            pytest.fail(last, pytrace=False)
        pytest.fail(f"{path.name} failed (exit {proc.returncode}): {last} — full log: {log}", pytrace=False)
    say(config, f"{path.stem}: ready in {time.monotonic() - started:.0f} s")
    return proc.stdout.strip().splitlines()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Run the setup scripts the collected tests need, once each, before the first test."""
    config = session.config
    results: dict[str, list[str] | str] = {}
    config.stash[_RESULTS] = results
    if config.option.collectonly:
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ()) if name in NEEDS}
    for name in sorted(wanted, key=list(NEEDS).index):
        script, doing = NEEDS[name]
        try:
            results[name] = run_setup(config, script, doing)
        except pytest.fail.Exception as exc:
            results[name] = str(exc)  # failed once: every test that needs it reports this line


def provided(config: pytest.Config, name: str) -> list[str]:
    """The setup script's stdout lines for fixture `name`, or fail the test with its one-line error.

    Provisions now when the collection step did not (e.g. a fixture requested dynamically).
    """
    results = config.stash.setdefault(_RESULTS, {})
    if name not in results:
        script, doing = NEEDS[name]
        try:
            results[name] = run_setup(config, script, doing)
        except pytest.fail.Exception as exc:
            results[name] = str(exc)
    result = results[name]
    if isinstance(result, str):
        pytest.fail(result, pytrace=False)
    return result
