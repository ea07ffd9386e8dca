"""Provisioning of the test servers' system needs (tests/servers/provision.py), with real scripts.

What a fresh machine relies on: a setup script's stdout is handed back, a script that knows the
fix fails the test with exactly that one line, any other failure with one line naming the log,
and two sessions never run the same script at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.servers.provision import REPO_ROOT, run_setup


@pytest.fixture(autouse=True)
def _scratch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFADVISOR_TEST_CACHE", str(tmp_path / "cache"))


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\n{body}\n")
    return path


def test_stdout_lines_come_back_and_stderr_goes_to_the_log(pytestconfig, tmp_path):
    s = script(tmp_path, "thing-setup.sh", 'echo "[thing-setup] installing" >&2\necho /opt/a\necho /opt/b')
    assert run_setup(pytestconfig, s, "checking the thing") == ["/opt/a", "/opt/b"]
    log = tmp_path / "cache" / "provision" / "thing-setup.log"
    assert log.read_text() == "[thing-setup] installing\n"


def test_a_session_provisions_before_the_first_test_and_reports_a_failure_as_one_line(tmp_path):
    """A real pytest session: what collected tests need is set up before any test runs (outside the
    per-test timeout, here 1 s against a 2 s step), one terminal line before and after; a step that
    cannot work fails just its tests, each with the script's line and no traceback; unneeded steps never run.
    """
    ok = script(tmp_path, "ok-setup.sh", 'sleep 2\necho "[ok-setup] chatter" >&2\necho done')
    bad = script(tmp_path, "bad-setup.sh", "echo '[bad-setup] tests need X: run `apt-get install x`' >&2\nexit 3")
    unused = script(tmp_path, "unused-setup.sh", f"touch {tmp_path / 'unused-ran'}")
    (tmp_path / "conftest.py").write_text(
        "from pathlib import Path\nimport pytest\nfrom tests.servers import provision\n"
        f"provision.NEEDS.clear()\nprovision.NEEDS.update(need_ok=(Path({str(ok)!r}), 'checking ok'), "
        f"need_bad=(Path({str(bad)!r}), 'checking bad'), need_unused=(Path({str(unused)!r}), 'checking unused'))\n"
        "@pytest.fixture(scope='session')\ndef need_ok(pytestconfig):\n    return provision.provided(pytestconfig, 'need_ok')\n"
        "@pytest.fixture(scope='session')\ndef need_bad(pytestconfig):\n    return provision.provided(pytestconfig, 'need_bad')\n"
        "@pytest.fixture(scope='session')\ndef need_unused(pytestconfig):\n    return provision.provided(pytestconfig, 'need_unused')\n"
    )
    (tmp_path / "test_inner.py").write_text(
        "def test_ok(need_ok):\n    assert need_ok == ['done']\n"
        "def test_bad_1(need_bad):\n    pass\n"
        "def test_bad_2(need_bad):\n    pass\n"
        "def test_plain():\n    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HFADVISOR_TEST_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.servers.provision", "-p", "no:cacheprovider", "-o", "timeout=1"]
    proc = subprocess.run(
        [*cmd, "test_inner.py"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    lines = out.splitlines()
    first_test = next(i for i, line in enumerate(lines) if line.startswith("test_inner.py "))
    steps = [line for line in lines[:first_test] if line.startswith("[provision]")]
    assert [line.split(" (")[0] for line in steps] == [
        "[provision] checking ok",
        "[provision] ok-setup: ready in 2 s",
        "[provision] checking bad",
    ]
    assert not (tmp_path / "unused-ran").exists()  # no collected test needs it
    assert "chatter" not in out  # the script's own output stays in its log
    assert out.count("\ntests need X: run `apt-get install x`\n") == 2  # each test's report: the line alone
    assert "2 passed" in out and "2 errors" in out
    assert "Traceback" not in out and "provision.py" not in out and "warning" not in out


def test_exit_3_fails_with_the_scripts_last_line_only(pytestconfig, tmp_path):
    fix = "browser tests need chromium: run `sudo apt-get install chromium` (or run pytest as root)"
    s = script(tmp_path, "browser-setup.sh", f"echo noise >&2\necho '[browser-setup] {fix}' >&2\nexit 3")
    with pytest.raises(pytest.fail.Exception) as info:
        run_setup(pytestconfig, s, "checking chromium")
    assert str(info.value) == fix
    assert not info.value.pytrace  # one line, no traceback


def test_other_failures_name_the_script_the_last_line_and_the_log(pytestconfig, tmp_path):
    s = script(tmp_path, "x-setup.sh", 'echo "compiler exploded" >&2\nexit 1')
    with pytest.raises(pytest.fail.Exception) as info:
        run_setup(pytestconfig, s, "checking x")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("x-setup.sh failed (exit 1): compiler exploded")
    assert str(tmp_path / "cache" / "provision" / "x-setup.log") in message


def test_two_sessions_run_a_script_one_after_the_other(pytestconfig, tmp_path):
    events = tmp_path / "events"
    s = script(tmp_path, "slow-setup.sh", f'echo "start $$" >>{events}\nsleep 0.3\necho "end $$" >>{events}\necho ok')
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(run_setup(pytestconfig, s, "slow"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [["ok"], ["ok"]]
    lines = events.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["start", "end", "start", "end"]
    assert lines[0].split()[1] == lines[1].split()[1]  # the first run finished before the second began


def test_ci_runs_exactly_the_readme_test_command():
    """CI proves the README: `.ci/run` installs and tests with one interpreter and nothing the README lacks."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert 'python -m pip install -e ".[embedded,dev]" && python -m pytest' in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert commands == ['python -m pip install -e ".[embedded,dev]"', "python -m pytest"]
