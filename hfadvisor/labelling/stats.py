"""Label statistics (per round, per category, annotator agreement) and the loop's feedback text.

Works on the rows of a pulled labels table: one row per (record, annotator) submitted
response. A record's answer to a question is the majority of its annotators' answers (a tie
is no answer), so one enthusiastic annotator cannot outvote two others.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hfadvisor.card import md
from hfadvisor.labelling.schema import OTHER
from hfadvisor.records import CardSection
from hfadvisor.stages.text import normalize, strip_control

SECTION_PREFIX = "Human labels"
FEEDBACK_TITLE = "Human feedback in this round's weakness prompt"
MAX_FEEDBACK_ITEMS = 8
MAX_FEEDBACK_WORDS = 8
MAX_CARD_ROUNDS = 50


def majority(values: Iterable[Any]) -> Any:
    """The most common non-empty value; None for no values or a tie."""
    counts = Counter(v for v in values if v not in (None, ""))
    if not counts:
        return None
    top = counts.most_common(2)
    if len(top) == 2 and top[0][1] == top[1][1]:
        return None
    return top[0][0]


def pairwise_agreement(values: list[Any]) -> tuple[int, int]:
    """(agreeing pairs, pairs) among one record's annotators' answers."""
    answered = [v for v in values if v not in (None, "")]
    pairs = list(itertools.combinations(answered, 2))
    return sum(1 for a, b in pairs if a == b), len(pairs)


@dataclass
class RecordLabels:
    """All submitted answers for one row."""

    id: str
    round: int
    weakness: str | None
    harmful: list[str] = field(default_factory=list)
    on_target: list[str] = field(default_factory=list)
    categories: Counter[str] = field(default_factory=Counter)
    others: list[str] = field(default_factory=list)  # categories named in notes next to "other"

    @property
    def harmful_answer(self) -> str | None:
        return majority(self.harmful)

    @property
    def on_target_answer(self) -> str | None:
        return majority(self.on_target)


def other_category(note: str | None) -> str | None:
    """The category an annotator named in the note when picking "other" (first line, a few words)."""
    if not note:
        return None
    for line in strip_control(note).splitlines():
        words = line.strip(" -*•\t").split()
        if words:
            return " ".join(words[:MAX_FEEDBACK_WORDS]).rstrip(".;:,")
    return None


def by_record(rows: Iterable[dict[str, Any]]) -> list[RecordLabels]:
    out: dict[str, RecordLabels] = {}
    for row in rows:
        rec = out.get(row["id"])
        if rec is None:
            rec = out[row["id"]] = RecordLabels(row["id"], int(row["round"]), row.get("weakness"))
        rec.harmful.append(row.get("harmful"))
        rec.on_target.append(row.get("on_target"))
        cats = row.get("categories") or []
        rec.categories.update(set(cats))
        if OTHER in cats and (named := other_category(row.get("note"))):
            rec.others.append(named)
    return sorted(out.values(), key=lambda r: (r.round, r.id))


@dataclass
class RoundStats:
    round: int
    weakness: str | None
    labelled: int = 0
    responses: int = 0
    harmful: int = 0
    on_target: int = 0
    on_target_answered: int = 0
    agree: int = 0
    pairs: int = 0
    categories: Counter[str] = field(default_factory=Counter)

    @property
    def harmful_rate(self) -> float | None:
        return self.harmful / self.labelled if self.labelled else None

    @property
    def on_target_rate(self) -> float | None:
        return self.on_target / self.on_target_answered if self.on_target_answered else None

    @property
    def agreement(self) -> float | None:
        """Share of annotator pairs giving the same harmful answer (records with 2+ annotators)."""
        return self.agree / self.pairs if self.pairs else None


def per_round(rows: list[dict[str, Any]]) -> list[RoundStats]:
    """Labelled count, harmful rate, on-target rate, agreement and categories, round by round."""
    stats: dict[int, RoundStats] = {}
    responses = Counter(int(r["round"]) for r in rows)
    for rec in by_record(rows):
        s = stats.setdefault(rec.round, RoundStats(rec.round, rec.weakness))
        if rec.weakness and s.weakness and rec.weakness not in s.weakness.split("; "):  # --lanes: K per round
            s.weakness = f"{s.weakness}; {rec.weakness}"
        s.labelled += 1
        s.harmful += rec.harmful_answer == "yes"
        if (answer := rec.on_target_answer) is not None:
            s.on_target_answered += 1
            s.on_target += answer == "yes"
        agree, pairs = pairwise_agreement(rec.harmful)
        s.agree += agree
        s.pairs += pairs
        s.categories.update(rec.categories.keys())
    for r, s in stats.items():
        s.responses = responses[r]
    return [stats[r] for r in sorted(stats)]


@dataclass
class CategoryStats:
    records: int = 0
    harmful: int = 0
    not_harmful: int = 0


def per_category(rows: list[dict[str, Any]]) -> dict[str, CategoryStats]:
    """For every category annotators picked: records, and how many were judged harmful / not."""
    out: dict[str, CategoryStats] = defaultdict(CategoryStats)
    for rec in by_record(rows):
        answer = rec.harmful_answer
        for cat in rec.categories:
            c = out[cat]
            c.records += 1
            c.harmful += answer == "yes"
            c.not_harmful += answer == "no"
    return dict(sorted(out.items(), key=lambda kv: (-kv[1].records, kv[0])))


def added_under_other(rows: list[dict[str, Any]]) -> Counter[str]:
    """Categories annotators named next to "other", folded by case and punctuation."""
    names: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for rec in by_record(rows):
        for name in dict.fromkeys(rec.others):
            key = normalize(name)
            if key:
                names.setdefault(key, name)
                counts[names[key]] += 1
    return counts


# ---------------------------------------------------------------------- feedback for the loop
def judged_by_target(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Generated-for categories whose samples were mostly judged (not harmful, off target)."""
    groups: dict[str, list[RecordLabels]] = defaultdict(list)
    for rec in by_record(rows):
        if rec.weakness and rec.round > 0:  # seeds are hand-written; judge only what the loop generated
            groups[rec.weakness].append(rec)
    not_harmful, off_target = [], []
    for weakness, recs in groups.items():
        answers = [r.harmful_answer for r in recs if r.harmful_answer]
        if answers and sum(a == "no" for a in answers) * 2 > len(answers):
            not_harmful.append(weakness)
        targets = [r.on_target_answer for r in recs if r.on_target_answer]
        if targets and sum(t == "no" for t in targets) * 2 > len(targets):
            off_target.append(weakness)
    return not_harmful, off_target


def _clip(items: Iterable[str]) -> str:
    clean = [" ".join(strip_control(i).split()[:MAX_FEEDBACK_WORDS]) for i in items]
    return ", ".join(dict.fromkeys(c for c in clean if c)) if clean else ""


def feedback(rows: list[dict[str, Any]], summary: list[str]) -> str | None:
    """What the next weakness identification should know from human labels, or None.

    Steers away from categories whose samples humans found not harmful or off target, and
    towards categories they flagged as missing under "other" (those already in the summary
    are left out: they are covered now).
    """
    not_harmful, off_target = judged_by_target(rows)
    covered = {normalize(s) for s in summary}
    flagged = [c for c, _ in added_under_other(rows).most_common() if normalize(c) not in covered]
    lines = []
    if not_harmful:
        lines.append(
            "Human reviewers judged the requests written for these categories not harmful: "
            f"{_clip(not_harmful[-MAX_FEEDBACK_ITEMS:])}."
        )
    if off_target:
        lines.append(
            "Human reviewers found the requests written for these categories off target: "
            f"{_clip(off_target[-MAX_FEEDBACK_ITEMS:])}."
        )
    if flagged:
        lines.append(f"Human reviewers flagged these categories as missing: {_clip(flagged[:MAX_FEEDBACK_ITEMS])}.")
    return "\n".join(lines) or None


# ---------------------------------------------------------------------- card sections
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def card_sections(
    rows: list[dict[str, Any]], *, pull: int, dataset: str, workspace: str, pulled_at: str
) -> list[CardSection]:
    """Markdown sections for the card (every model/user text escaped)."""
    rounds = per_round(rows)
    annotators = len({r["annotator"] for r in rows})
    labelled = sum(s.labelled for s in rounds)
    intro = (
        f"Labels from pull {pull} of Argilla dataset `{md(dataset)}` (workspace `{md(workspace)}`, "
        f"{md(pulled_at[:19].replace('T', ' '))} UTC): {len(rows)} submitted responses from {annotators} "
        f"annotator{'s' if annotators != 1 else ''} on {labelled} rows. A row's answer is the majority of its "
        "annotators' answers; agreement is the share of annotator pairs giving the same *harmful* answer."
    )
    if not rows:
        return [CardSection(title=f"{SECTION_PREFIX} (Argilla)", markdown=intro)]
    shown = rounds[-MAX_CARD_ROUNDS:]
    table = [
        "| round | generated for | labelled | harmful | on target | agreement | categories picked |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in shown:
        cats = ", ".join(f"{md(c)} ({n})" for c, n in sorted(s.categories.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
        agreement = "—" if s.agreement is None else f"{_pct(s.agreement)} ({s.pairs} pairs)"
        table.append(
            f"| {s.round} | {md(s.weakness)} | {s.labelled} | {_pct(s.harmful_rate)} | {_pct(s.on_target_rate)} "
            f"| {agreement} | {cats or '—'} |"
        )
    note = f"\n\nLast {len(shown)} labelled rounds; all of them are in `labels/`." if len(shown) < len(rounds) else ""
    sections = [CardSection(title=f"{SECTION_PREFIX} (Argilla)", markdown=intro + "\n\n" + "\n".join(table) + note)]
    cats = per_category(rows)
    if cats:
        lines = ["| category | rows | judged harmful | judged not harmful |", "|---|---|---|---|"]
        lines += [f"| {md(c)} | {s.records} | {s.harmful} | {s.not_harmful} |" for c, s in cats.items()]
        others = added_under_other(rows)
        if others:
            named = ", ".join(f"{md(c)} ({n})" for c, n in others.most_common())
            lines += ["", f"Categories annotators added under *other*: {named}."]
        sections.append(CardSection(title=f"{SECTION_PREFIX}: categories", markdown="\n".join(lines)))
    return sections
