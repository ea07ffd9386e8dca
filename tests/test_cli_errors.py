"""Bad input: one actionable line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import json

import pytest

from tests.helpers import cli, free_port


def _one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("yaml_text", "expect"),
    [
        ("rounds: [oops", "not valid YAML"),
        ("roundz: 3", "unknown key"),
        ("rounds: three", "rounds"),
        ("rounds: 0", "rounds"),
        ("batch_size: -1", "batch_size"),
        ("sampling: {weakness: {temperature: hot}}", "sampling.weakness.temperature"),
        ("- just\n- a list", "mapping"),
        ("endpoints: [ftp://x]", "http"),
        ("preset: nosuch", "unknown preset"),
    ],
)
def test_bad_config_file(tmp_path, yaml_text, expect):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "run"
    proc = cli("run", "--config", str(cfg), "--output", str(out), "--endpoint", "http://127.0.0.1:9")
    assert proc.returncode == 2, proc.stderr
    assert expect in _one_error_line(proc)
    assert not out.exists()


def test_bad_flags(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--rounds", "0", "--output", str(out), "--endpoint", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "rounds" in _one_error_line(proc)
    assert not out.exists()


def test_seed_files(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--seed-pool", str(tmp_path / "missing.txt"), "-o", str(out), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "not found" in _one_error_line(proc)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# only a comment\n\n")
    proc = cli("run", "--seed-summary", str(empty), "-o", str(out), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "empty" in _one_error_line(proc)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    proc = cli("run", "--seed-pool", str(binary), "-o", str(out), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "UTF-8" in _one_error_line(proc)
    huge = tmp_path / "huge.txt"
    with huge.open("w") as f:
        for i in range(600_000):
            f.write(f"seed query number {i} which is long enough to count\n")
    proc = cli("run", "--seed-pool", str(huge), "-o", str(out), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "MB" in _one_error_line(proc)
    assert not out.exists()


def test_unreachable_endpoint_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "-o", str(out), "-e", f"http://127.0.0.1:{free_port()}", "--rounds", "1")
    assert proc.returncode == 2
    assert "cannot reach" in _one_error_line(proc)
    assert not out.exists()


def test_broken_card_template(tmp_path):
    tpl = tmp_path / "card.md"
    tpl.write_text("---\n{{ card_data }}\n---\n{% for x in %}\n")
    out = tmp_path / "run"
    proc = cli("run", "--card-template", str(tpl), "-o", str(out), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "card template" in _one_error_line(proc)
    assert not out.exists()


def test_not_a_run_directory(tmp_path):
    (tmp_path / "something.txt").write_text("mine")
    proc = cli("run", "-o", str(tmp_path), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "not an hfadvisor run" in _one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something.txt"]


def test_incompatible_run_format(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"format": 99, "run_id": "x"}))
    proc = cli("run", str(tmp_path), "-e", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "format 99" in _one_error_line(proc)
    proc = cli("log", str(tmp_path))
    assert proc.returncode == 2 and "format 99" in _one_error_line(proc)


def test_help_shows_the_defaults(tmp_path):
    """Rich markup swallows unescaped `[default: …]`; the defaults must match RunConfig's."""
    from hfadvisor.config import RunConfig

    defaults = RunConfig()
    fields = RunConfig.model_fields
    shown = cli("run", "--help", env={"COLUMNS": "250"}).stdout
    for name in ("rounds", "batch_size", "concurrency", "hub_tag_prefix"):
        assert f"{fields[name].description} [default: {getattr(defaults, name)}]" in shown, name
    assert f"attempts per call before giving up [default: {defaults.retry.max_attempts}]" in shown
    assert "[default: main]" in cli("hub", "pull", "--help", env={"COLUMNS": "250"}).stdout
    assert "[default: main]" in cli("pull", "--help", env={"COLUMNS": "250"}).stdout  # the old name, hidden
