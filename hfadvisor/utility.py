"""Utility evaluation (MMLU, zero-shot): does safety tuning cost general ability?

The target answers each multiple-choice question greedily (options shown as "(A) … (B) …");
no judge: the chosen letter is read from the answer by `benchmarks.parse_choice`, and an
answer that names no option clearly is wrong and counted as `unparsed`. With `structured`
on or auto, the call carries the JSON schema `{"answer": "A"|"B"|"C"|"D"}` (TGI grammar / chat
response_format) where the endpoint honours it; off (the default) is the paper's free-text
protocol, so that models evaluated on different servers stay comparable.

Same directory layout and resume rules as the safety evaluation: `evaluation.json`, `parts/`,
then `judgements.parquet`, `report.md` and `summary.json` (written last).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Unpack

from hfadvisor.benchmarks import ANSWER_SCHEMA, LETTERS, Question, mmlu_prompt, parse_choice
from hfadvisor.errors import ConfigError
from hfadvisor.evaluate import (
    EvaluatedTarget,
    RunOptions,
    TargetFormat,
    checked_output,
    greedy,
    open_output,
    pct,
    report_table,
    run_chunks,
    run_options,
    target_prompt,
    target_settings,
    write_result,
)
from hfadvisor.llm import EndpointSpec, connect
from hfadvisor.records import arrow_schema, features

STRUCTURED = ("off", "auto", "on")
# choices: a JSON list in letter order; answer: the gold letter; structured: the answer was schema-constrained
# JSON; predicted: A-D, or "" when unparsed; parsed_by: json | letter | paren | option_text | unparsed
ANSWER_FEATURES = features(
    id="string", subject="string", question="string", choices="string", answer="string", response="string",
    response_finish_reason="string", structured="bool", predicted="string", parsed_by="string", correct="bool",
)  # fmt: skip
ANSWER_TABLE_SCHEMA = arrow_schema(ANSWER_FEATURES)


@dataclass
class Accuracy:
    """Correct answers of a set of questions; unparsed answers count as wrong."""

    questions: int
    correct: int
    unparsed: int
    accuracy: float | None

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> Accuracy:
        correct = sum(bool(r["correct"]) for r in rows)
        unparsed = sum(r["parsed_by"] == "unparsed" for r in rows)
        return cls(len(rows), correct, unparsed, correct / len(rows) if rows else None)


@dataclass
class UtilityResult(EvaluatedTarget):
    """What was evaluated and how many answers were right (`summary.json` is its `to_dict()`)."""

    kind: str
    benchmark: str
    target_format: str
    structured: str  # off | auto | on: whether the answer schema was sent
    correct: int
    unparsed: int
    structured_answers: int  # answers the endpoint constrained to the schema
    accuracy: float | None
    per_subject: dict[str, Accuracy]


async def evaluate_mmlu(
    questions: list[Question],
    output: str | Path,
    *,
    target: EndpointSpec | str | list[str],
    target_format: TargetFormat = "chat",
    structured: Literal["off", "auto", "on"] = "off",
    max_new_tokens: int = 128,
    **run: Unpack[RunOptions],
) -> UtilityResult:
    """Ask, read and score `questions`; resumes an earlier evaluation in `output` with the same settings.

    Args:
        questions: `benchmarks.load_mmlu()`.
        output: a new or earlier evaluation directory.
        target: the model under test (an `EndpointSpec`, or its URL(s) with the defaults); its
            `chat_template` (tgi api) defaults to the server's. Its `structured` is not used: the
            argument below is part of the protocol, and recorded.
        target_format: `chat` (the target's chat template) or `paper` (the reference's raw prompt).
        structured: `off` (text answers only), `auto` (the answer schema where the endpoint honours
            it) or `on` (an endpoint that does not is an error).
        run: `source`, `chunk_size` (questions per committed chunk), `on_progress` (see `RunOptions`).

    Returns:
        Accuracy overall and per subject, with the settings.

    Raises:
        ConfigError: bad options, or `output` is something else.
        RunStateError: `output` holds an evaluation made with other settings.
        EndpointError: the server kept failing (answered chunks are kept).
    """
    target, run = EndpointSpec.of(target), run_options(run)
    if structured not in STRUCTURED:
        raise ConfigError(f"--structured {structured!r}: choose {', '.join(STRUCTURED)}")
    out = checked_output(output, target, target_format)
    sampling = greedy(max_new_tokens)
    schema = None if structured == "off" else ANSWER_SCHEMA
    async with connect(replace(target, chat_template=None, structured=structured)) as t:  # template: below
        client = t.client
        settings = {
            "source": run["source"],
            "prompts": len(questions),
            "chunk_size": run["chunk_size"],
            "prompts_sha256": hashlib.sha256(json.dumps([asdict(q) for q in questions]).encode()).hexdigest(),
            **target_settings(t, target, target_format, sampling),
            "kind": "utility",
            "benchmark": "mmlu",
            "target_format": target_format,
            "structured": structured,
        }
        open_output(out, settings)

        async def answer_one(q: Question) -> dict[str, Any]:
            prompt = target_prompt(mmlu_prompt(q), target_format)
            answer = await client.complete(prompt, sampling, stage="mmlu", schema=schema)
            predicted, how = parse_choice(answer.text, q.choices)
            return {
                "id": q.id,
                "subject": q.subject,
                "question": q.question,
                "choices": json.dumps(q.choices, ensure_ascii=False),
                "answer": q.answer,
                "response": answer.text.strip(),
                "response_finish_reason": answer.finish_reason or "",
                "structured": answer.structured,
                "predicted": predicted or "",
                "parsed_by": how,
                "correct": predicted == q.answer,
            }

        table = await run_chunks(out, questions, answer_one, ANSWER_TABLE_SCHEMA, run)

    result = score(settings, table.to_pylist())
    write_result(out, table, result, report_markdown(result))
    return result


def score(settings: dict[str, Any], rows: list[dict[str, Any]]) -> UtilityResult:
    """Accuracy overall and per subject (unparsed answers are wrong, and counted)."""
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row)
    overall = Accuracy.of(rows)
    return UtilityResult(
        **settings,
        correct=overall.correct,
        unparsed=overall.unparsed,
        structured_answers=sum(bool(r["structured"]) for r in rows),
        accuracy=overall.accuracy,
        per_subject={s: Accuracy.of(rs) for s, rs in sorted(by_subject.items())},
    )


def report_markdown(result: UtilityResult) -> str:
    from hfadvisor.card import md

    fmt = "the paper's raw prompt" if result.target_format == "paper" else "its chat template"
    lines = [
        "# Utility evaluation (MMLU, zero-shot)",
        "",
        f"Target {md(result.target_model)} answered {result.prompts} questions from {md(result.source or 'the given list')} "
        f"through {fmt} (options {', '.join(f'({letter})' for letter in LETTERS)}; answer schema: {result.structured}, "
        f"{result.structured_answers} structured answers).",
        "",
        f"**Accuracy: {pct(result.accuracy)}** ({result.correct} correct; {result.unparsed} answers named no "
        "option clearly and count as wrong).",
        "",
        *report_table(
            ["subject", "questions", "correct", "unparsed", "accuracy"],
            [[md(s), a.questions, a.correct, a.unparsed, pct(a.accuracy)] for s, a in result.per_subject.items()],
            "Raw answers and the letter read from each: `judgements.parquet`.",
        ),
    ]
    return "\n".join(lines)
