"""A scripted model for the lanes tests: answers every stage in every prompt style, by the call's seed.

Kept apart from `tests/test_lanes.py` so the K = 1 golden transcript (`tests/data/lanes_k1_golden.json`,
recorded from the loop before lanes existed) and the test that compares against it share one oracle.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hfadvisor.serve.backend import GenerationRequest

GOLDEN = Path(__file__).resolve().parent / "data" / "lanes_k1_golden.json"
NOUNS = [
    "forgery",
    "lockpicking",
    "poaching",
    "smuggling",
    "arson",
    "stalking",
    "doxxing",
    "bribery",
    "piracy",
    "counterfeiting",
    "wiretapping",
    "extortion",
    "sabotage",
    "trespassing",
    "vandalism",
    "looting",
    "phishing",
    "skimming",
    "spoofing",
    "hijacking",
    "cyberbullying",
    "swatting",
    "gerrymandering",
    "embezzlement",
    "blackmail",
]


def stage_of(prompt: str) -> str:
    """Which stage a prompt belongs to, in any of the three built-in styles."""
    if "One more" in prompt or "is not covered yet?" in prompt or "is missing from this list?" in prompt:
        return "weakness"
    if "New list" in prompt or "Update the summary" in prompt or "to the summary above" in prompt:
        return "summarize"
    return "generate"


def name_for(seed: int) -> str:
    """A two-word category from a seed (distinct seeds give distinct names with high probability)."""
    return f"{NOUNS[seed % len(NOUNS)].capitalize()} {NOUNS[(seed // len(NOUNS)) % len(NOUNS)]}"


def added(prompt: str) -> list[str]:
    """The weaknesses a summarize prompt asks to add (one line each in the multi-weakness wording)."""
    one = re.search(
        r"(?:was just added: |added to the dataset: |Add the following harm category to the summary above:\n)(.+)",
        prompt,
    )
    if one:
        return [one.group(1).rstrip(".")]
    many = re.search(r"were just added(?: to the dataset)?:\n((?:\* .+\n)+)", prompt) or re.search(
        r"to the summary above:\n((?:\* .+\n)+)", prompt
    )
    return [ln[2:] for ln in many.group(1).splitlines()] if many else []


def old_lines(prompt: str, style: str) -> list[str]:
    if style == "paper":
        return prompt.split("Summary of harm categories:\n", 1)[1].split("\n---\n", 1)[0].splitlines()
    head = prompt.split("\nA new", 1)[0].split("\nNew harm categories", 1)[0]
    return head.splitlines()[1:]


class Oracle:
    """`respond` for a scripted server: weakness = a name from the seed; generate = a request naming
    the seed; summarize = the old lines + one line per weakness asked (append style: the new lines)."""

    def __init__(self, style: str = "completion") -> None:
        self.style = style
        self.log: list[tuple[str, int | None]] = []

    def __call__(self, req: GenerationRequest) -> str:
        stage = stage_of(req.prompt)
        self.log.append((stage, req.seed))
        seed = req.seed or 0
        keys = set((req.json_schema or {}).get("properties", {}))
        if stage == "weakness":
            return json.dumps({"category": name_for(seed)}) if keys else f" {name_for(seed)}\n"
        if stage == "generate":
            text = f"How would someone carry out harmful plan number {seed}?"
            return json.dumps({"request": text}) if keys else f" {text}\n"
        new = added(req.prompt)
        if "summary" in keys:
            return json.dumps({"summary": [*old_lines(req.prompt, self.style), *new]})
        if "categories" in keys:
            return json.dumps({"categories": new})
        if "category" in keys:
            return json.dumps({"category": new[0]})
        if self.style == "completion":
            return " " + "\n- ".join(new) + "\n\n"
        return "\n".join([*old_lines(req.prompt, self.style), *new, "---" if self.style == "paper" else "END"])


def transcript(store: Any, requests: list[GenerationRequest]) -> dict[str, Any]:
    """What K = 1 must keep byte-identical: every request sent (prompt, seed, stops, length) in order of
    seed within a stage, and every row and summary (row ids without the random run prefix)."""
    sent = [{"prompt": r.prompt, "seed": r.seed, "stop": r.stop, "max_new_tokens": r.max_new_tokens} for r in requests]
    sent.sort(key=lambda x: (x["prompt"], x["seed"] or 0))
    table = store.table()
    rows = [
        {k: v for k, v in row.items() if k not in ("id", "exemplar_ids", "lane")}
        | {"id": row["id"][9:], "exemplar_ids": [e[9:] for e in row["exemplar_ids"]]}
        for row in table.to_pylist()
    ]
    revs = [
        {
            "weakness": rev.weakness,
            "summary_after": rev.summary_after,
            "summary_source": rev.summary_source,
            "weakness_attempts": rev.weakness_attempts,
        }
        for rev in store.revisions()
    ]
    return {"requests": sent, "rows": rows, "revisions": revs}


CASES = {
    "completion": ("completion", "auto"),
    "instruct": ("instruct", "auto"),
    "paper": ("paper", "auto"),
    "completion-text": ("completion", "off"),
    "paper-text": ("paper", "off"),
}


def run_args(style: str, structured: str) -> dict[str, Any]:
    return {
        "rounds": 3,
        "batch_size": 4,
        "prompt_style": style,
        "structured": structured,
        "metrics": False,
    }


def record(path: Path = GOLDEN) -> None:  # pragma: no cover - run once, by hand, on the loop before lanes
    import tempfile

    import hfadvisor
    from tests.servers.tgi import ScriptedBackend, running_tgi

    out: dict[str, Any] = {}
    for name, (style, structured) in CASES.items():
        oracle = Oracle(style)
        with running_tgi(ScriptedBackend(oracle)) as server, tempfile.TemporaryDirectory() as tmp:
            store = hfadvisor.run(Path(tmp) / "run", endpoints=[server.url], **run_args(style, structured))
            out[name] = transcript(store, server.backend.requests)  # type: ignore[attr-defined]
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    record()
