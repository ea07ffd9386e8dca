"""SIGKILL a run at random moments, rerun it: no complete round lost, no row twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import hfadvisor
from hfadvisor.rundir.store import RunStore
from tests.helpers import cli

TRIALS = 6


@pytest.mark.timeout(300)
def test_kill_mid_round_then_resume(tmp_path, scripted_tgi):
    counter = iter(range(10**6))
    scripted_tgi.backend.respond = lambda req: f" Generated line number {next(counter)} of the scripted model\n"
    scripted_tgi.backend.delay = 0.02  # every call takes a little while: kills land mid-round
    out = tmp_path / "run"
    rounds = 12
    rng = random.Random(1234)
    args = [sys.executable, "-m", "hfadvisor", "run", "-o", str(out), "-e", scripted_tgi.url]
    args += ["--rounds", str(rounds), "--batch-size", "4"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    kept: dict[str, bytes] = {}
    killed = 0
    for _ in range(TRIALS):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.2, 2.5))  # interpreter start is ~1 s; then rounds take ~0.2 s each
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        if not RunStore.exists(out):
            continue
        store = RunStore.open(out)  # repairs leftovers of the killed round
        # every round that was complete before stays byte-identical
        for name, data in kept.items():
            assert (out / "data" / name).read_bytes() == data, f"{name} changed after a kill"
        kept = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
        assert [r.round for r in store.revisions()] == list(range(store.rounds_done))
    assert killed >= 3
    proc = cli("run", str(out), "-e", scripted_tgi.url)  # the planned --rounds is remembered
    assert proc.returncode == 0, proc.stderr
    ds = hfadvisor.load_run(out)
    assert sorted(set(ds["round"])) == list(range(rounds + 1))
    assert len(set(ds["id"])) == ds.num_rows
    assert len(set(ds["prompt"])) == ds.num_rows
    assert RunStore.open(out, repair=False).rounds_done == rounds + 1


@pytest.mark.timeout(120)
def test_ctrl_c_exits_130_and_the_run_resumes(tmp_path, scripted_tgi):
    counter = iter(range(10**6))
    scripted_tgi.backend.respond = lambda req: f" Generated line number {next(counter)} of the scripted model\n"
    scripted_tgi.backend.delay = 0.05
    out = tmp_path / "run"
    args = [sys.executable, "-m", "hfadvisor", "run", "-o", str(out), "-e", scripted_tgi.url, "--rounds", "50"]
    proc = subprocess.Popen(
        args, env={**os.environ, "NO_PROXY": "127.0.0.1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "revisions" / "round-00002.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "resume" in stderr and "Traceback" not in stderr
    done = RunStore.open(out).rounds_done
    assert 3 <= done < 51
    finish = cli("run", str(out), "-e", scripted_tgi.url)
    assert finish.returncode == 0, finish.stderr
    ds = hfadvisor.load_run(out)
    assert sorted(set(ds["round"])) == list(range(51)) and len(set(ds["id"])) == ds.num_rows
