"""SIGKILL a run at random moments, rerun it: no complete round lost, no row twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import hfadvisor
from hfadvisor.rundir.store import RunStore
from tests.helpers import cli

TRIALS = 6
WAIT = 120.0  # seconds a trial may wait for the moment it aims at (only reached if the run is stuck)

# The child restores SIGINT's default before it starts hfadvisor: a suite started from a background
# job or a service inherits SIGINT as ignored, and Python keeps an ignored SIGINT ignored. (The CLI
# does not override it: a shell ignores SIGINT in background jobs so that Ctrl-C stops only the
# foreground command; SIGTERM or SIGKILL stop such a run, and no complete round is lost.)
RESTORE_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'hfadvisor', *sys.argv[1:]])"
)


def revisions(out: Path) -> int:
    try:
        return sum(1 for n in os.listdir(out / "revisions") if n.startswith("round-") and n.endswith(".json"))
    except FileNotFoundError:
        return 0


def wait_for(proc: subprocess.Popen, moment: Callable[[], bool], what: str) -> None:
    """Poll until `moment()` (an event the child caused: a file, a request it sent); fail if it exits first."""
    deadline = time.monotonic() + WAIT
    while not moment():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what} never happened")
        time.sleep(0.002)


@pytest.mark.timeout(600)
def test_kill_mid_round_then_resume(tmp_path, scripted_tgi):
    """Each SIGKILL lands inside a round: after the child has sent k calls of a round not yet committed."""
    counter = iter(range(10**6))
    scripted_tgi.backend.respond = lambda req: f" Generated line number {next(counter)} of the scripted model\n"
    scripted_tgi.backend.delay = 0.02  # a round spans several calls: there is an inside to aim at
    calls = scripted_tgi.backend.calls
    out = tmp_path / "run"
    rounds = 12
    rng = random.Random(1234)
    args = [sys.executable, "-m", "hfadvisor", "run", "-o", str(out), "-e", scripted_tgi.url]
    args += ["--rounds", str(rounds), "--batch-size", "4"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    kept: dict[str, bytes] = {}
    mid_round = 0
    for _ in range(TRIALS):
        before = revisions(out)
        target = before + rng.randint(0, 1)  # let up to one more round commit first
        k = rng.randint(1, 4)  # then k calls into the next round (each round makes 6 calls)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(proc, lambda: revisions(out) >= target, f"round {target} being reached")  # noqa: B023
        at = len(calls)
        wait_for(proc, lambda: len(calls) >= at + k, f"{k} calls into the round")  # noqa: B023
        committed = revisions(out)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL  # the kill, not an exit of its own, ended it
        mid_round += revisions(out) == committed  # no round completed between the aim and the kill
        store = RunStore.open(out)  # repairs leftovers of the killed round
        # every round that was complete before stays byte-identical
        for name, data in kept.items():
            assert (out / "data" / name).read_bytes() == data, f"{name} changed after a kill"
        kept = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
        assert [r.round for r in store.revisions()] == list(range(store.rounds_done))
        assert store.rounds_done == revisions(out) >= before  # the repair dropped no complete round
    assert mid_round >= TRIALS - 1, mid_round
    proc = cli("run", str(out), "-e", scripted_tgi.url)  # the planned --rounds is remembered
    assert proc.returncode == 0, proc.stderr
    ds = hfadvisor.load_run(out)
    assert sorted(set(ds["round"])) == list(range(rounds + 1))
    assert len(set(ds["id"])) == ds.num_rows
    assert len(set(ds["prompt"])) == ds.num_rows
    assert RunStore.open(out, repair=False).rounds_done == rounds + 1
    for name, data in kept.items():
        assert (out / "data" / name).read_bytes() == data


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")]
)
def test_ctrl_c_or_sigterm_ends_the_run_cleanly_and_it_resumes(tmp_path, scripted_tgi, sig, code, said):
    counter = iter(range(10**6))
    scripted_tgi.backend.respond = lambda req: f" Generated line number {next(counter)} of the scripted model\n"
    scripted_tgi.backend.delay = 0.05
    out = tmp_path / "run"
    args = [sys.executable, "-c", RESTORE_SIGINT, "run", "-o", str(out), "-e", scripted_tgi.url, "--rounds", "50"]
    proc = subprocess.Popen(
        args, env={**os.environ, "NO_PROXY": "127.0.0.1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(proc, lambda: revisions(out) >= 3, "round 2 being committed")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert said in stderr and "resume" in stderr and "Traceback" not in stderr
    # the run cleaned up (a killed process writes no session record): what it spent, how it ended
    (session,) = [json.loads(p.read_text()) for p in (out / "sessions").glob("session-*.json")]
    assert session["outcome"] == "interrupted" and session["ledger"]["requests"] > 0
    done = RunStore.open(out).rounds_done
    assert 3 <= done < 51
    finish = cli("run", str(out), "-e", scripted_tgi.url)
    assert finish.returncode == 0, finish.stderr
    ds = hfadvisor.load_run(out)
    assert sorted(set(ds["round"])) == list(range(51)) and len(set(ds["id"])) == ds.num_rows
