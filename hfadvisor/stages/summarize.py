"""Stage 3: fold the weakness into the running summary (a list of short lines).

Small models rewrite lists badly (drop lines, loop), so the parsed answer is checked and,
when it loses lines, replaced by a deterministic fallback (old list + the weakness in at
most five words). Which one was used is recorded in the round's revision.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hfadvisor.presets import DELIMITER, Preset
from hfadvisor.stages.text import first_line, normalize, strip_control, strip_label, strip_quotes, words

MAX_WORDS = 5


@dataclass
class SummaryUpdate:
    summary: list[str]
    source: str  # "model" | "fallback"
    note: str = ""


def build_prompt(preset: Preset, style: str, summary: list[str], weakness: str, new_examples: list[str] | None) -> str:
    return preset.render(style, "summarize", summary=summary, weakness=weakness, new_examples=new_examples or [])


def _clean(line: str) -> str:
    return strip_quotes(strip_label(line, ())).rstrip(".;:,").strip()


def _covered(summary: list[str], item: str) -> bool:
    return normalize(item) in {normalize(line) for line in summary}


def fallback(summary: list[str], weakness: str, note: str) -> SummaryUpdate:
    item = words(weakness, MAX_WORDS)
    new = summary if not item or _covered(summary, item) else [*summary, item]
    return SummaryUpdate(list(new), "fallback", note)


def _related(item: str, weakness: str, summary: list[str]) -> bool:
    """Does the new line share a distinctive word with the weakness it is meant to name?

    Words on many summary lines ("harmfulness") do not count: they say nothing about the topic.
    """
    counts = Counter(w for line in summary for w in set(normalize(line).split()))
    common = {w for w, n in counts.items() if n > max(1, len(summary) // 3)}
    return bool((set(normalize(item).split()) & set(normalize(weakness).split())) - common)


def parse(text: str, summary: list[str], weakness: str, mode: str, *, delimiter: str = DELIMITER) -> SummaryUpdate:
    """`mode` is `append` (the model wrote only the next line) or `full` (the whole list)."""
    if mode == "append":
        item = words(_clean(first_line(text)), MAX_WORDS)
        if not item:
            return fallback(summary, weakness, "empty answer")
        if _covered(summary, item):  # the model says an existing line covers the weakness...
            if _related(item, weakness, summary):
                return SummaryUpdate(list(summary), "model", "already covered")
            # ...but that line has nothing to do with it: the summary would stop growing
            return fallback(summary, weakness, f"model named an existing, unrelated line: {item[:60]!r}")
        if not _related(item, weakness, summary):
            return fallback(summary, weakness, f"model named an unrelated line: {item[:60]!r}")
        return SummaryUpdate([*summary, item], "model")
    body = strip_control(text).split(delimiter, 1)[0]
    lines = [_clean(ln) for ln in body.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) > len(summary) + 3:
        return fallback(summary, weakness, f"answer had {len(lines)} lines for {len(summary)} + 1 (looping)")
    too_long = [ln for ln in lines if len(ln.split()) > MAX_WORDS]
    if too_long:
        return fallback(summary, weakness, f"line over {MAX_WORDS} words: {too_long[0][:60]!r}")
    deduped = list(dict.fromkeys(lines))
    new_keys, old_keys = {normalize(ln) for ln in deduped}, {normalize(ln) for ln in summary}
    lost = [ln for ln in summary if normalize(ln) not in new_keys]
    if lost:
        return fallback(summary, weakness, f"answer dropped {len(lost)} existing line(s)")
    added = [ln for ln in deduped if normalize(ln) not in old_keys]
    if not added:  # else the summary stops growing and the weakness stage keeps finding the same gap
        return fallback(summary, weakness, "answer added no line for the weakness")
    if not any(_related(ln, weakness, summary) for ln in added):
        return fallback(summary, weakness, f"answer added only unrelated line(s): {added[0][:60]!r}")
    return SummaryUpdate(deduped, "model")
