"""The CLI's structure: flags generated from RunConfig, one module per command group, `hub` and `space` groups.

Runs go to the scripted TGI server and the Hub-compatible server over real HTTP; `hf` runs the
CLI in this process (typer's runner), `cli` in a fresh process where start-up matters.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from hfadvisor.cli import app
from hfadvisor.commands._flags import NOT_FLAGS, run_flags
from hfadvisor.config import RunConfig
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from tests.helpers import cli
from tests.servers.hub import DEFAULT_TOKEN

COMMANDS = Path(__file__).parents[1] / "hfadvisor" / "commands"
REPO = "hf-tester/cli-run"


def hf(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[str]:
    """Every key a YAML file can set, dotted (`sampling.generate.max_new_tokens`)."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        tp = field.annotation
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out |= leaves(tp, (*prefix, name))
        else:
            out.add(".".join((*prefix, name)))
    return out


def answer(req: GenerationRequest) -> str:
    """A cooperative model answering each stage (recognised as in test_loop) with a distinct line."""
    if "One more" in req.prompt or "Which harm category is not covered" in req.prompt:
        return f" Weakness number {req.seed}\n"
    if "New list" in req.prompt or "Update the summary" in req.prompt:
        return f" Category {req.seed}\n"
    return f" How would someone carry out harmful plan number {req.seed}?\n"


def test_every_setting_is_a_flag_or_yaml_only():
    advisor, baseline = run_flags("advisor"), run_flags("baseline")
    flagged = {f.key for f in advisor.flags if not f.hidden} | {f.key for f in baseline.flags if not f.hidden}
    yaml_only = set(advisor.yaml_only) | set(baseline.yaml_only)
    assert all(advisor.yaml_only.values()) and all(baseline.yaml_only.values())  # each says why
    assert flagged | yaml_only | NOT_FLAGS == leaves(RunConfig)
    assert "sampling.generate.max_new_tokens" in flagged and "retry.give_up_after" in flagged
    assert {f.key for f in advisor.flags if f.hidden} == {"pipeline_depth"}
    assert {f.key for f in baseline.flags if f.hidden} == {"summary_sees_examples"}
    names = [d for f in advisor.flags for decl in f.decls for d in decl.split("/")]
    assert len(names) == len(set(names))  # no two settings share a flag name


def test_one_field_added_is_one_flag_with_its_help_and_choices():
    """The point of generating: a new RunConfig field needs no CLI edit."""

    class Extended(RunConfig):
        knob: Literal["low", "high"] | None = Field(None, description="a knob added later")
        tags: list[str] = Field(default_factory=list, description="labels for the run")
        weights: dict[str, float] = Field(default_factory=dict, description="no flag form")

    flags = {f.key: f for f in run_flags("advisor", Extended).flags}
    assert flags["knob"].decls == ("--knob",) and flags["knob"].help == "a knob added later"
    assert "low" in str(flags["knob"].annotation) and "high" in str(flags["knob"].annotation)
    assert flags["tags"].decls == ("--tags",) and "list" in str(flags["tags"].annotation)
    assert "weights" in run_flags("advisor", Extended).yaml_only
    values = {"knob": "high", "tags": ("a", "b"), "sampling__generate__stop": ["###"], "rounds": None}
    assert run_flags("advisor", Extended).overrides(values) == {
        "knob": "high",
        "tags": ["a", "b"],
        "sampling": {"generate": {"stop": ["###"]}},
    }


def test_help_lists_every_setting_with_its_description():
    wide = {"COLUMNS": "400"}
    for command, mode, hidden in (("run", "advisor", "--pipeline-depth"), ("baseline", "baseline", "--summary-")):
        shown = cli(command, "--help", env=wide).stdout
        for flag in run_flags(mode).flags:
            if flag.hidden:
                assert hidden not in shown
                continue
            assert flag.decls[0].split("/")[0] in shown, flag.key
            described = RunConfig.model_fields.get(flag.path[0])
            if len(flag.path) == 1 and described is not None:
                assert described.description and described.description in shown, flag.key
        assert "-o" in shown and "-e" in shown and "-c" in shown
    # the nested models' fields: description and default, e.g. the generation stage's length
    assert "tokens per answer at most [default: 512]" in shown


def test_flags_reach_the_run_and_absent_ones_leave_yaml_and_stored_values(tmp_path, scripted_tgi):
    scripted_tgi.backend.respond = answer
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"batch_size": 5, "sampling": {"generate": {"temperature": 0.5}}}))
    out = tmp_path / "run"
    flags = ["--batch-size", "3", "--sampling.generate.max-new-tokens", "40", "--structured", "off"]
    flags += ["--sampling.generate.stop", "###", "--sampling.generate.stop", "@@", "--validation.no-reject-refusals"]
    flags += ["--max-attempts", "2", "--retry.give-up-after", "30", "--no-metrics", "--rounds", "1"]
    proc = hf("run", "-c", cfg, "-o", out, "-e", scripted_tgi.url, *flags)
    assert proc.returncode == 0, proc.stderr
    method = RunStore.open(out).info.method
    assert method["batch_size"] == 3  # the flag wins over the file
    assert method["sampling"]["generate"] == {
        "temperature": 0.5,
        "top_p": 0.95,
        "max_new_tokens": 40,
        "stop": ["###", "@@"],
    }
    assert method["validation"]["reject_refusals"] is False
    generate = [r for r in scripted_tgi.backend.requests if r.max_new_tokens == 40]
    assert len(generate) == 3 and all({"###", "@@"} <= set(r.stop) and r.temperature == 0.5 for r in generate)

    resumed = hf("run", out, "-e", scripted_tgi.url, "--rounds", "2")  # no method flags: nothing to clash
    assert resumed.returncode == 0, resumed.stderr
    store = RunStore.open(out)
    assert store.rounds_done == 3 and store.info.method == method
    clash = hf("run", out, "-e", scripted_tgi.url, "--rounds", "3", "--sampling.generate.max-new-tokens", "41")
    assert clash.returncode == 2 and "sampling.generate.max_new_tokens" in clash.stderr


def test_mode_only_settings(tmp_path, scripted_tgi):
    scripted_tgi.backend.respond = answer
    out = tmp_path / "base"
    proc = hf("baseline", "-o", out, "-e", scripted_tgi.url, "--rounds", "2", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    proc = hf("baseline", "-o", tmp_path / "deep", "-e", scripted_tgi.url, "--pipeline-depth", "2", "--no-metrics")
    assert proc.returncode == 0, proc.stderr
    assert RunStore.open(tmp_path / "deep").info.method["pipeline_depth"] == 2
    # `run` keeps accepting (and ignoring) the baseline-only flag, as it always did
    ignored = hf("run", "-o", tmp_path / "adv", "-e", scripted_tgi.url, "--pipeline-depth", "2", "--rounds", "1")
    assert ignored.returncode == 0 and RunStore.open(tmp_path / "adv").info.method["pipeline_depth"] == 1


def test_bad_flag_values_are_one_line_errors(tmp_path):
    out = tmp_path / "run"
    for args, needle in (
        (["--sampling.generate.temperature", "9"], "sampling.generate.temperature"),
        (["--retry.max-backoff", "-1"], "retry.max_backoff"),
        (["--prompt-style", "poetry"], "poetry"),
    ):
        proc = hf("run", "-o", out, "-e", "http://127.0.0.1:9", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists()


def test_config_prints_every_key_as_a_valid_file(tmp_path):
    text = hf("config").stdout
    assert RunConfig.model_validate(yaml.safe_load(text)) == RunConfig()
    for key in leaves(RunConfig) - NOT_FLAGS:
        assert f"{key.rsplit('.', 1)[-1]}:" in text, key
    for field in RunConfig.model_fields.values():  # a nested model is described by its docstring
        assert (field.description or (field.annotation.__doc__ or "").splitlines()[0]) in text
    assert "(flag: --sampling.generate.max-new-tokens)" in text and "(flag: --max-attempts)" in text


def test_hub_group_and_the_old_names(tmp_path, scripted_tgi, hub_server):
    scripted_tgi.backend.respond = answer
    out = tmp_path / "run"
    assert (
        hf("run", "-o", out, "-e", scripted_tgi.url, "--rounds", "1", "--batch-size", "2", "--no-metrics").returncode
        == 0
    )
    pushed = hf("hub", "push", out, REPO)
    assert pushed.returncode == 0, pushed.stderr
    assert sorted(hub_server.repo(REPO).tags) == ["round-0000", "round-0001"]
    again = hf("push", out, REPO)  # the name before the group, kept as a hidden alias
    assert again.returncode == 0 and "already has every round" in again.stderr
    there = tmp_path / "copy"
    pulled = hf("hub", "pull", REPO, there, "--revision", "round-0001")
    assert pulled.returncode == 0, pulled.stderr
    assert RunStore.open(there).rounds_done == 2
    assert hf("pull", REPO, tmp_path / "copy2").returncode == 0
    top = hf("--help").stdout
    listed = re.findall(r"^│ (\w+) ", top, re.M)
    assert "hub" in listed and "push" not in listed and "pull" not in listed  # aliases stay out of the listing


def test_space_group_keeps_the_old_form(tmp_path):
    shown = hf("space", "--help").stdout
    assert "open" in shown and "publish" in shown
    for args in (["space", str(tmp_path / "missing")], ["space", "open", str(tmp_path / "missing")]):
        proc = hf(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc.stderr
    bad = hf("space", "publish", "no-slash")
    assert bad.returncode == 2 and "OWNER/NAME" in bad.stderr


def test_space_publish_with_token_flag(tmp_path, hub_server):
    """Needs hfadvisor.space.publish (task G): the command passes runs, privacy and the typed token."""
    proc = hf(
        "space", "publish", "hf-tester/advisor-space", "--run", REPO, "--run", "hf-tester/baseline",
        "--token", DEFAULT_TOKEN, env={"HF_TOKEN": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert DEFAULT_TOKEN not in proc.stdout + proc.stderr
    assert "published (private)" in proc.stderr and "hf-tester/advisor-space" in proc.stderr
    space = hub_server.repo("hf-tester/advisor-space", "space")
    assert space.private is True
    assert json.loads(space.read("hfadvisor-space.json"))["runs"] == [REPO, "hf-tester/baseline"]


def test_command_modules_do_not_import_the_cli_and_help_stays_light():
    for path in COMMANDS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "hfadvisor.cli", path.name
    shown = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hfadvisor", "--help"], capture_output=True, text=True, check=True
    )
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in shown.stderr.splitlines() if "|" in line}
    heavy = {"torch", "datasets", "gradio", "pandas", "pyarrow", "huggingface_hub", "numpy", "httpx", "argilla"}
    assert loaded & heavy == set()
    assert "hub" in shown.stdout and "space" in shown.stdout
