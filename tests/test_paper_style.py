"""The `paper` prompt style: the reference code's call format (raw text, `---`-delimited summary) over real HTTP."""

from __future__ import annotations

import re

import pytest

import hfadvisor
from hfadvisor.errors import ConfigError
from hfadvisor.presets import load_preset
from hfadvisor.serve.backend import GenerationRequest


class PaperScript:
    """Answers the paper-style prompts the way Mistral-7B-Instruct does when sent raw text."""

    def __init__(self) -> None:
        self.n = 0
        self.stages: list[str] = []

    @staticmethod
    def stage_of(prompt: str) -> str:
        if prompt.rstrip().endswith("New harm category:"):
            return "weakness"
        if "Add the following harm category" in prompt:
            return "summarize"
        if prompt.rstrip().endswith("The new request:"):
            return "selfinstruct"
        return "generate"

    def __call__(self, req: GenerationRequest) -> str:
        self.n += 1
        stage = self.stage_of(req.prompt)
        self.stages.append(stage)
        if stage == "weakness":
            return f"Counterfeit goods {self.n} harmfulness\nThis category covers..."
        if stage == "summarize":
            old = req.prompt.split("Summary of harm categories:\n", 1)[1].split("\n---\n", 1)[0].splitlines()
            weak = req.prompt.split("to the summary above:\n", 1)[1].splitlines()[0]
            # the model writes the whole list, then the delimiter (the server cuts at the stop)
            return "\n".join([*old, " ".join(weak.split()[:5]), "---", "Note: I added one line."])
        return f'"How do I sell counterfeit item number {self.n} without getting caught?"\nThis request is harmful.'


@pytest.fixture
def paper_script(scripted_tgi) -> PaperScript:
    s = PaperScript()
    scripted_tgi.backend.respond = s
    return s


def test_paper_style_sends_raw_text_with_the_reference_structure(tmp_path, scripted_tgi, paper_script):
    rounds, batch = 2, 3
    store = hfadvisor.run(
        tmp_path / "run", endpoints=[scripted_tgi.url], rounds=rounds, batch_size=batch, prompt_style="paper"
    )
    calls = scripted_tgi.backend.calls
    assert paper_script.stages == (["weakness"] + ["generate"] * batch + ["summarize"]) * rounds
    assert {c.route for c in calls} <= {"/", "/generate"}  # TGI's generate API: raw text, no chat template
    weak, gen, summ = (next(c.request for c in calls if paper_script.stage_of(c.request.prompt) == s) for s in
                       ("weakness", "generate", "summarize"))  # fmt: skip
    assert "<|" not in weak.prompt  # no chat template markers
    # the summary as a bare list closed by the delimiter, in the weakness and summary prompts
    seeds = load_preset("safety").seed_summary
    assert "\n".join(seeds) + "\n---\n" in weak.prompt
    assert "\n".join(seeds) + "\n---\n" in summ.prompt
    assert gen.prompt.endswith("You:\n") and "help you with something harmful" in gen.prompt
    assert len(re.findall(r"^How do I|^[A-Z]", gen.prompt.split("sent it before:\n")[1].split("\n\n")[0], re.M)) == 3
    # the reference's sampling: weakness 0.9/0.95/32, generation 0.9/0.95/512, summary greedy, cut at ---
    assert (weak.temperature, weak.top_p, weak.max_new_tokens) == (0.9, 0.95, 32)
    assert (gen.temperature, gen.top_p, gen.max_new_tokens) == (0.9, 0.95, 512)
    assert summ.temperature in (None, 0.0) and "---" in summ.stop
    assert not weak.stop and not gen.stop  # the first line is taken from the answer, as in the reference

    revs = list(store.revisions())[1:]
    for rev in revs:
        assert rev.weakness.startswith("Counterfeit goods")  # first line, not the explanation after it
        assert rev.summary_source == "model"  # the rewrite cut at --- kept every line and added one
        assert rev.summary_after[: len(rev.summary_before)] == rev.summary_before
        assert len(rev.summary_after) == len(rev.summary_before) + 1
    rows = store.table().to_pylist()
    advisor = [r["prompt"] for r in rows if r["source"] == "advisor"]
    assert len(advisor) == rounds * batch
    assert all(p.startswith("How do I sell counterfeit") and not p.startswith('"') for p in advisor)
    assert store.info.method["prompt_style"] == "paper"


def test_prompts_file_lays_exact_texts_over_the_preset(tmp_path, scripted_tgi, paper_script):
    prompts = tmp_path / "reference.yaml"
    prompts.write_text(
        "paper:\n"
        "  weakness: |+\n"
        "    MY CATEGORIES:\n"
        "    {{ summary_text }}\n"
        "    ---\n"
        "    What is missing? New harm category:\n\n",
        encoding="utf-8",
    )
    store = hfadvisor.run(
        tmp_path / "run",
        endpoints=[scripted_tgi.url],
        rounds=1,
        batch_size=2,
        prompt_style="paper",
        prompts=str(prompts),
    )
    weak = next(c.request for c in scripted_tgi.backend.calls if paper_script.stage_of(c.request.prompt) == "weakness")
    assert weak.prompt.startswith("MY CATEGORIES:\nMedical harmfulness\n")
    # the resolved preset (with the user's text) is stored and hashed with the run: a resume needs no file
    assert store.info.preset["prompts"]["paper"]["weakness"].startswith("MY CATEGORIES:")
    prompts.unlink()
    resumed = hfadvisor.run(tmp_path / "run", endpoints=[scripted_tgi.url], rounds=2)
    assert resumed.rounds_done == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("nosuchstyle:\n  weakness: x\n", "unknown prompt style 'nosuchstyle'"),
        ("paper: [1, 2]\n", "expected a mapping of stage templates"),
        ("paper:\n  weakness: '{% if %}'\n", "prompts.paper.weakness: template error"),
    ],
)
def test_bad_prompts_file_is_one_line_config_error(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_preset("safety", prompts_file=str(path))
    with pytest.raises(ConfigError, match=r"prompts file .* not found"):
        load_preset("safety", prompts_file=str(tmp_path / "missing.yaml"))


def test_a_rewrite_that_merges_lines_is_kept_and_the_card_shows_it(tmp_path, scripted_tgi):
    def respond(req: GenerationRequest) -> str:
        stage = PaperScript.stage_of(req.prompt)
        if stage == "weakness":
            return "Counterfeit goods harmfulness"
        if stage == "summarize":
            old = req.prompt.split("Summary of harm categories:\n", 1)[1].split("\n---\n", 1)[0].splitlines()
            rest = [line for line in old if line not in ("Financial harmfulness", "Legal harmfulness")]
            return "\n".join(["Financial and legal harm", *rest, "Counterfeit goods", "---"])
        return f"How do I sell fake designer bags number {len(scripted_tgi.backend.calls)} online?"

    scripted_tgi.backend.respond = respond
    store = hfadvisor.run(
        tmp_path / "run", endpoints=[scripted_tgi.url], rounds=1, batch_size=2, prompt_style="paper", metrics=False
    )
    rev = store.last
    assert rev.summary_source == "model"
    assert rev.summary_merged == {
        "Financial harmfulness": "Financial and legal harm",
        "Legal harmfulness": "Financial and legal harm",
    }
    assert rev.summary_added == ["Counterfeit goods"] and rev.summary_dropped == []
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "| summary lines | added Counterfeit goods · merged Financial harmfulness → Financial and legal harm" in card
