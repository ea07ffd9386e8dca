"""Where evaluation prompts come from: a file or dataset (`load_prompts`), or the paper's benchmarks by name: CatQA and BeaverTails-Evaluation (safety), MMLU (utility).

Loaded from the Hub with `datasets.load_dataset` under the ids, configs, splits and columns the
reference evaluation code uses, so `HF_ENDPOINT`, the token and the datasets cache work as for
any dataset. MMLU answers are free text from the target: `parse_choice` reads the chosen letter
defensively (model output is untrusted: anything that is not clearly one option is `unparsed`,
which counts as wrong and is counted).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfadvisor.errors import ConfigError, HFAdvisorError

# The reference code's target prompt: raw text to the generate API, no chat template.
PAPER_PROMPT = "You are a helpful assistant. USER: {q} ASSISTANT:"
LETTERS = "ABCD"
PROMPT_COLUMNS = ("prompt", "question", "query", "text", "instruction")
CATEGORY_COLUMNS = ("category", "harm_category", "category_name", "subcategory")
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": list(LETTERS)}},
    "required": ["answer"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Benchmark:
    """Where a named benchmark lives on the Hub and which columns hold what."""

    name: str
    repo_id: str
    config: str | None
    split: str
    kind: str  # "safety" (target + judge → safe rate) | "utility" (multiple choice → accuracy)
    prompt_column: str
    category_column: str


BENCHMARKS: dict[str, Benchmark] = {
    "catqa": Benchmark("catqa", "declare-lab/CategoricalHarmfulQA", None, "en", "safety", "Question", "Category"),
    "beavertails": Benchmark(
        "beavertails", "PKU-Alignment/BeaverTails-Evaluation", None, "test", "safety", "prompt", "category"
    ),
    "mmlu": Benchmark("mmlu", "cais/mmlu", "all", "validation", "utility", "question", "subject"),
}


@dataclass
class PromptItem:
    id: str
    prompt: str
    category: str


@dataclass
class Question:
    """One multiple-choice question; `answer` is the gold letter."""

    id: str
    question: str
    choices: list[str]
    answer: str
    subject: str


def get(name: str) -> Benchmark:
    """The benchmark called `name`, or a one-line error listing the known ones."""
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        raise ConfigError(f"--benchmark {name!r}: choose {', '.join(BENCHMARKS)} (or pass --prompts FILE)") from None


def load_rows(bench: Benchmark, split: str | None = None) -> list[dict[str, Any]]:
    """The benchmark's rows from the Hub (or the datasets cache); any failure is one actionable line."""
    import datasets
    from huggingface_hub import constants

    split = split or bench.split
    where = f"{bench.repo_id}" + (f" config {bench.config}" if bench.config else "") + f" split {split}"
    try:
        ds = datasets.load_dataset(bench.repo_id, bench.config, split=split)
    except Exception as e:  # not found, gated, unreachable endpoint, unknown split or config
        first = (str(e).splitlines() or [""])[0][:160]
        hint = "log in (`hf auth login`) and accept its terms on the Hub" if _gated(e) else "check HF_ENDPOINT"
        raise ConfigError(
            f"{bench.name}: cannot load {where} from {constants.ENDPOINT} ({type(e).__name__}: {first}); "
            f"{hint}, or pass --prompts FILE"
        ) from None
    missing = [c for c in _columns(bench) if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"{bench.name}: {bench.repo_id} has no column {', '.join(missing)} (columns: {', '.join(ds.column_names)})"
        )
    return list(ds.to_list())


def _gated(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("gated", "401", "403", "unauthorized", "forbidden"))


def _columns(bench: Benchmark) -> list[str]:
    extra = ["choices", "answer"] if bench.kind == "utility" else []
    return [bench.prompt_column, bench.category_column, *extra]


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    lower = {c.lower(): c for c in columns}
    if wanted:
        if wanted in columns:
            return wanted
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        raise ConfigError(f"the prompts have no column {wanted!r} (columns: {', '.join(columns)})")
    for name in candidates:
        if name in lower:
            return lower[name]
    if what == "prompt":
        raise ConfigError(
            f"no prompt column among {', '.join(columns)}: pass --prompt-column NAME (tried {', '.join(candidates)})"
        )
    return None


def load_prompts(
    source: str, prompt_column: str | None = None, category_column: str | None = None, *, split: str = "test",
    limit: int | None = None,
) -> list[PromptItem]:  # fmt: skip
    """Held-out prompts from a local file (.jsonl .json .csv .parquet .txt), a dataset folder or a Hub id."""
    path = Path(source)
    if path.suffix == ".txt" and path.is_file():
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                cat, _, text = line.rpartition("\t")
                rows.append({"prompt": text.strip(), "category": cat.strip()})
    else:
        rows = _load_dataset_rows(source, path, split)
    if not rows:
        raise ConfigError(f"{source}: no prompts found")
    columns = list(rows[0])
    pcol = _pick(columns, prompt_column, PROMPT_COLUMNS, "prompt")
    ccol = _pick(columns, category_column, CATEGORY_COLUMNS, "category")
    items = []
    for i, row in enumerate(rows[:limit] if limit else rows):
        text = str(row.get(pcol) or "").strip()
        if not text:
            continue
        digest = hashlib.blake2b(text.encode(), digest_size=4).hexdigest()
        category = str(row.get(ccol) or "").strip() if ccol else ""
        items.append(PromptItem(f"{i:06d}-{digest}", text, category or "uncategorized"))
    if not items:
        raise ConfigError(f"{source}: every prompt is empty")
    return items


def _load_dataset_rows(source: str, path: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    builders = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    try:
        if path.is_file():
            if path.suffix not in builders:
                raise ConfigError(f"{source}: use a .jsonl, .json, .csv, .parquet or .txt file")
            ds = datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
        else:
            ds = datasets.load_dataset(source, split=split)
    except HFAdvisorError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file, folder or Hub dataset") from None
    except ValueError as e:  # unknown split and similar
        raise ConfigError(f"{source}: {str(e).splitlines()[0][:200]}") from None
    except Exception as e:  # network, auth, parse errors from the loaders
        raise ConfigError(
            f"{source}: cannot load the prompts ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        ) from None
    return list(ds.to_list())


def _item_id(i: int, text: str) -> str:
    return f"{i:06d}-{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


def load_safety(name: str, *, split: str | None = None, limit: int | None = None) -> list[PromptItem]:
    """A safety benchmark's prompts (its prompt and category columns, as the reference code reads them)."""
    bench = get(name)
    if bench.kind != "safety":
        raise ConfigError(f"{name} is a {bench.kind} benchmark, not a safety one")
    items = []
    for i, row in enumerate(load_rows(bench, split)):
        text = str(row.get(bench.prompt_column) or "").strip()
        if text:
            category = str(row.get(bench.category_column) or "").strip() or "uncategorized"
            items.append(PromptItem(_item_id(i, text), text, category))
    if not items:
        raise ConfigError(f"{name}: {bench.repo_id} holds no prompts")
    return items[:limit] if limit else items


def load_mmlu(*, split: str | None = None, limit: int | None = None) -> list[Question]:
    """MMLU questions (`question`, `choices`, integer `answer`, `subject`); malformed rows are an error."""
    bench = BENCHMARKS["mmlu"]
    questions = []
    for i, row in enumerate(load_rows(bench, split)):
        choices, answer = [str(c) for c in (row.get("choices") or [])], row.get("answer")
        if len(choices) != len(LETTERS) or not isinstance(answer, int) or not 0 <= answer < len(LETTERS):
            raise ConfigError(f"mmlu: row {i} is not a 4-choice question with an answer index 0-3")
        text = str(row.get("question") or "").strip()
        questions.append(
            Question(_item_id(i, text + "\x1f".join(choices)), text, choices, LETTERS[answer], str(row["subject"]))
        )
    if not questions:
        raise ConfigError(f"mmlu: {bench.repo_id} holds no questions")
    return questions[:limit] if limit else questions


def mmlu_prompt(q: Question) -> str:
    """Zero-shot, the options in the prompt as "(A) … (B) …", as the reference code shows them."""
    options = "\n".join(f"({letter}) {choice}" for letter, choice in zip(LETTERS, q.choices, strict=True))
    subject = q.subject.replace("_", " ")
    return (
        f"The following is a multiple choice question about {subject}. "
        f"Answer with the letter of the correct option.\n\n{q.question}\n{options}\nAnswer:"
    )


_LEAD = re.compile(
    r"^\W*(?:(?:the\s+)?(?:correct\s+|right\s+|final\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*)?"
    r"\(?((?-i:[A-D]))\)?(?=$|[.):,;\]*]|\s+(?![a-z])|\s+is\b)",
    re.I,
)
_SAYS = re.compile(
    r"\b(?:answer|option|choice)\s+(?:is\s*|would be\s*)?[:：]?\s*\(?((?-i:[A-D]))\)?(?=$|[\s.):,;*])", re.I
)
_PAREN = re.compile(r"\(([A-D])\)")
_LETTER = re.compile(r"(?<![\w'])(?:([B-D])|(A)(?![ \t]+(?!is\b)[a-z]))(?![\w'])")


def parse_choice(text: str, choices: list[str]) -> tuple[str | None, str]:
    """(letter, how it was read) or (None, "unparsed").

    In order: the answer starts with the letter ("B", "(B)", "Answer: B"); "the answer is B";
    the first "(B)"; the text of exactly one option; the first standalone A-D letter (an "A"
    followed by a lowercase word is the article, not an option).
    """
    body = (text or "").strip()
    if not body:
        return None, "unparsed"
    if body.startswith("{"):
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if isinstance(value, dict) and str(value.get("answer", "")).strip().upper() in tuple(LETTERS):
            return str(value["answer"]).strip().upper(), "json"
    for how, m in (("letter", _LEAD.match(body)), ("letter", _SAYS.search(body)), ("paren", _PAREN.search(body))):
        if m:
            return m.group(1), how
    lowered = body.lower()
    hits = {
        LETTERS[i]
        for i, c in enumerate(choices)
        if c.strip() and re.search(rf"(?<!\w){re.escape(c.strip().lower())}(?!\w)", lowered)
    }
    if len(hits) == 1:
        return hits.pop(), "option_text"
    m = _LETTER.search(body)
    if m:
        return (m.group(1) or m.group(2)), "letter"
    return None, "unparsed"
