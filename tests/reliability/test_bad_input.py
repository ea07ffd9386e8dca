"""Bad input, for a new run and for resuming an existing one: one actionable line, exit 2, nothing written.

test_cli_errors.py checks each kind once for a new run; here every kind also meets an existing run
(whose directory must stay byte-identical), and a few more kinds are added: a missing config or
template file, a template failing at render time, seed files too long, run directories damaged
or from another version.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hfadvisor
from hfadvisor.cli import app
from tests.helpers import tree
from tests.test_loop import Script

GROUP = "Bad input"
UNITS = ("one bad input given to one command", "one bad input (file, flag or damaged run directory)")
pytestmark = pytest.mark.reliability


def hf(*args: object) -> subprocess.CompletedProcess:
    """`hfadvisor ARGS` in this process (typer's runner): dozens of cases, no interpreter start-up each."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    return errors[0]


def files(tmp: Path) -> dict[str, tuple[str, str]]:
    """name → (file content, text the error line must contain)."""
    huge = "".join(f"seed query {i:06d} long enough\n" for i in range(150_000))  # 4.5 MB, too many entries
    return {
        "malformed YAML": ("rounds: [oops", "not valid YAML"),
        "unknown key": ("roundz: 3", "unknown key"),
        "wrong type": ("rounds: three", "rounds"),
        "rounds 0": ("rounds: 0", "rounds"),
        "rounds negative": ("rounds: -5", "rounds"),
        "batch size 0": ("batch_size: 0", "batch_size"),
        "nested wrong type": ("sampling: {generate: {top_p: [1]}}", "sampling.generate.top_p"),
        "not a mapping": ("- a\n- list", "mapping"),
        "missing seed file": (f"seed_pool: {tmp / 'nope.txt'}", "not found"),
        "empty seed file": (f"seed_pool: {tmp / 'empty.txt'}", "empty"),
        "huge seed file": (f"seed_pool: {tmp / 'huge.txt'}", "entries"),
        "non-UTF-8 seed file": (f"seed_summary: {tmp / 'binary.txt'}", "UTF-8"),
        "template syntax error": (f"card_template: {tmp / 'syntax.md'}", "card template"),
        "template unknown filter": (f"card_template: {tmp / 'filter.md'}", "card template"),
        "template render error": (f"card_template: {tmp / 'render.md'}", "card template"),
        "template missing": (f"card_template: {tmp / 'nope.md'}", "card template"),
    }, huge


@pytest.fixture
def bad(tmp_path):
    cases, huge = files(tmp_path)
    (tmp_path / "empty.txt").write_text("\n# only a comment\n\n")
    (tmp_path / "huge.txt").write_text(huge)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "syntax.md").write_text("---\n{{ card_data }}\n---\n{% for x in %}\n")
    (tmp_path / "filter.md").write_text("---\n{{ card_data }}\n---\n{{ round | nosuchfilter }}\n")
    (tmp_path / "render.md").write_text("---\n{{ card_data }}\n---\n{{ round.no.such.attribute }}\n")
    configs = {}
    for i, (name, (text, expect)) in enumerate(cases.items()):
        cfg = tmp_path / f"cfg{i}.yaml"
        cfg.write_text(text)
        configs[name] = (cfg, expect)
    return configs


def test_bad_config_for_a_new_run_and_for_a_resumed_one(tmp_path, scripted_tgi, bad, tally):
    scripted_tgi.backend.respond = Script()  # answers each stage in its own form
    existing = tmp_path / "existing"
    hfadvisor.run(existing, endpoints=[scripted_tgi.url], rounds=1, batch_size=2, metrics=False)
    before = tree(existing)
    generations = len(scripted_tgi.backend.calls)
    problems = []
    for name, (cfg, expect) in bad.items():
        new = tmp_path / f"new-{cfg.stem}"
        fresh = hf("run", "-c", cfg, "-o", new, "-e", scripted_tgi.url)
        ok = fresh.returncode == 2 and expect in fresh.stderr and not new.exists()
        tally.trial()
        tally.fault(survived=ok)  # refused with exit 2 naming the problem, nothing created
        assert expect in one_line(fresh) and not new.exists(), (name, fresh.stderr)
        more = [] if cfg.read_text().startswith("rounds") else ["--rounds", "2"]  # one round to do (flags win)
        resumed = hf("run", existing, "-c", cfg, "-e", scripted_tgi.url, *more)
        kept = tree(existing) == before
        tally.trial()
        tally.fault(survived=resumed.returncode == 2 and kept)  # refused, the existing run byte for byte as before
        if resumed.returncode == 2:
            one_line(resumed)
        else:
            problems.append(f"{name}: resume exit {resumed.returncode}")
        assert kept, f"{name}: the existing run changed"
    assert problems == []
    assert len(scripted_tgi.backend.calls) == generations  # bad input never reached the model


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (lambda p: (p / "run.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "run.json").write_text(json.dumps({"format": 99, "run_id": "x"})), "format 99"),
        (lambda p: (p / "run.json").write_text(json.dumps({"run_id": "x"})), "format None"),
        (lambda p: (p / "run.json").write_bytes(b"\xff\xfe"), "not valid JSON"),
    ],
    ids=["run.json not JSON", "future format", "no format", "run.json binary"],
)
def test_damaged_or_incompatible_run_directory(tmp_path, scripted_tgi, tally, damage, expect):
    scripted_tgi.backend.respond = Script()  # answers each stage in its own form
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=1, batch_size=2, metrics=False)
    damage(out)
    before = tree(out)
    for args in (["run", out, "-e", scripted_tgi.url], ["log", out], ["baseline", out, "-e", scripted_tgi.url]):
        proc = hf(*args)
        tally.trial()
        tally.fault(survived=proc.returncode == 2 and expect in proc.stderr and tree(out) == before)
        assert expect in one_line(proc)
    assert tree(out) == before
