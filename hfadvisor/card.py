"""Dataset cards, rendered from the templates in `dataset_cards/` with huggingface_hub.

Everything that came from a model (weakness, summary lines) is escaped before it reaches
Markdown, so generated text cannot inject HTML, links or table breaks into the card.
"""

from __future__ import annotations

import functools
import html
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml
from huggingface_hub import DatasetCardData

from hfadvisor.errors import ConfigError
from hfadvisor.records import CardSection, Revision, RevisionIndex, RunInfo
from hfadvisor.rundir import paths

HISTORY_ROWS = 50
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~!])")


def default_template() -> Path:
    """The packaged template (wheel) or the repository's `dataset_cards/` (source checkout)."""
    packaged = resources.files("hfadvisor").joinpath("_dataset_cards/run_card.md")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "dataset_cards" / "run_card.md"


@functools.lru_cache(maxsize=8)
def _compiled(source: str) -> jinja2.Template:
    """Compile a card template once per distinct text: compiling took over half of a card's
    render time (a round's card is rendered on the loop's critical path)."""
    return jinja2.Template(source)


def _from_template(data: DatasetCardData, path: str | Path, **kwargs: Any) -> str:
    """`str(DatasetCard.from_template(...))`, with the compiled template reused (same text → same card).

    The text is returned as rendered: `DatasetCard(content)` parsed the YAML header back and
    `str()` dumped it again, the same text for twice the work (a card is rendered every round,
    on the loop's critical path). `test_card_text_equals_datasetcard` keeps the two equal.
    """
    variables = data.to_dict().copy()
    variables.update(kwargs)
    return _compiled(Path(path).read_text(encoding="utf-8")).render(card_data=data.to_yaml(), **variables)


_CONFIG_YAML: dict[str, str] = {}


def _config_yaml(info: RunInfo) -> str:
    """The method as YAML, once per config hash (the hash covers the method: same hash, same text)."""
    text = _CONFIG_YAML.get(info.config_hash)
    if text is None:
        dumped = yaml.safe_dump(info.method, sort_keys=True, allow_unicode=True)
        text = _CONFIG_YAML[info.config_hash] = dumped.strip().replace("```", "'''")
    return text


def md(text: str | None) -> str:
    """Escape model text for a Markdown table cell or list item."""
    if text is None:
        return "—"
    text = " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def summary_changes(rev: Revision) -> str:
    """Lines added, merged (old → new) and dropped by the round's summary update, for one table cell."""
    parts = []
    if rev.summary_added:
        parts.append("added " + "; ".join(md(x) for x in rev.summary_added))
    if rev.summary_merged:
        parts.append("merged " + "; ".join(f"{md(a)} → {md(b)}" for a, b in rev.summary_merged.items()))
    if rev.summary_dropped:
        parts.append("dropped by the model, kept by the fallback " + "; ".join(md(x) for x in rev.summary_dropped))
    return " · ".join(parts)


def answer_paths(rev: Revision) -> str:
    """Which path each stage's answers took in this round: structured (JSON schema) or text."""
    how = "json schema via response_format" if rev.api == "chat" else "json schema via grammar"
    parts = []
    for stage, c in rev.ledger.by_stage.items():
        if c.structured and c.text:
            parts.append(f"{stage}: structured ({how}) {c.structured} / text {c.text}")
        elif c.requests:
            parts.append(f"{stage}: structured ({how})" if c.structured else f"{stage}: text")
    return "; ".join(parts)


def cost_rows(rev: Revision, ledger_total: Any) -> dict[str, Any]:
    """Prompt tokens and, when the round was run with prices, its cost and the run's (at the round's prices).

    When the endpoint reported no prompt tokens the card says so, and the cost is labelled output-only.
    """
    reported = getattr(ledger_total, "input_reported", "all")
    if reported == "none":
        tokens_in = "not reported by the endpoint (token counts and costs cover output tokens only)"
    else:
        tokens_in = f"{ledger_total.prompt_tokens} (whole run{'; some calls did not report them' if reported == 'some' else ''})"
    prices = rev.extra.get("prices") if isinstance(rev.extra, dict) else None
    cost = None
    if prices:
        pi, po = prices.get("input"), prices.get("output")
        this, total = rev.ledger.cost(pi, po), ledger_total.cost(pi, po)
        if this is not None and total is not None:
            cost = {
                "prices": f"input {pi if pi is not None else '—'}, output {po if po is not None else '—'} per 1M tokens",
                "round": this.label(),
                "total": total.label(),
            }
    return {"tokens_in": tokens_in, "cost": cost}


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def card_data(
    info: RunInfo, rows_total: int, rejects_total: int, responses: bool = False, version: str = ""
) -> DatasetCardData:
    """The card's YAML. `version` names the revision the card describes (run, round, commit time):
    `datasets` caches a local folder by its `configs` entries, not by the files their globs match
    (datasets#2956), so without it `load_dataset(run_dir)` returned the rows of the first load
    after a resume or after the run was replaced under the same name."""
    preset = info.preset

    def config(name: str, glob: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"config_name": name, "data_files": [{"split": "train", "path": glob}]}
        return entry | ({"description": version} if version else {})

    configs: list[dict[str, Any]] = [config("default", paths.DATA_GLOB) | {"default": True}]
    if rejects_total:  # a config whose glob matches no file would make load_dataset fail
        configs.append(config("rejects", paths.REJECTS_GLOB))
    if responses:  # answers of `hfadvisor respond`: id, round, response, model, ...
        configs.append(config("responses", paths.RESPONSES_GLOB))
    return DatasetCardData(
        license=preset.get("license", "apache-2.0"),
        task_categories=preset.get("task_categories", ["text-generation"]),
        language=["en"],
        tags=[*preset.get("tags", []), "hfadvisor", info.mode],
        size_categories=[size_category(rows_total)],
        pretty_name=f"hfadvisor {preset.get('name', '')} {info.mode} run",
        configs=configs,
    )


def render(
    info: RunInfo,
    rev: Revision,
    index: list[RevisionIndex],
    *,
    rounds_planned: int,
    ledger_total: Any,
    tag: str | None = None,
    repo_id: str | None = None,
    template: Path | None = None,
    extra_sections: list[CardSection] | None = None,
    responses: bool = False,
) -> str:
    """The card for round `rev.round`, given the light index of every round up to it.

    `tag`/`repo_id` are filled in when the card is rendered for the Hub; `extra_sections`
    are added after the round's own sections (e.g. human-label statistics pulled later);
    `responses` declares the `responses` config (only where responses/*.parquet exist).
    """
    rows_total = sum(i.rows for i in index)
    rejects_total = sum(i.rejects for i in index)
    history = index[-HISTORY_ROWS:]
    preset = info.preset
    baseline = info.mode == "baseline"
    method_text = (
        "each round writes new queries from random pool examples, and every accepted query joins the pool (Self-Instruct baseline)."
        if baseline
        else "each round summarizes what the data covers, asks a model what is missing (the weakness), "
        "and generates a batch of queries aimed at that weakness (Data Advisor, Wang et al., EMNLP 2024)."
    )
    kwargs = {
        "title": f"{preset.get('name', 'hfadvisor').capitalize()} dataset — {info.mode} run {info.run_id[:8]}",
        "harmful": bool(preset.get("harmful", True)),
        "description": " ".join(str(preset.get("description", "")).split()),
        "method_name": "Self-Instruct baseline" if baseline else "Data Advisor",
        "method_text": method_text,
        "run_id": info.run_id,
        "round": rev.round,
        "rounds_planned": rounds_planned,
        "tag": tag,
        "weakness": md(rev.targeted),
        "rows_round": rev.rows,
        "rows_total": rows_total,
        "rejects_round": rev.rejects,
        "rejects_total": rejects_total,
        "reject_reasons": ", ".join(f"{k}: {v}" for k, v in sorted(rev.reject_reasons.items())),
        "summary_source": rev.summary_source,
        "summary_note": md(rev.summary_note) if rev.summary_note else "",
        "summary_changes": summary_changes(rev),
        "answers": answer_paths(rev),
        "model": md(rev.model),
        "ledger": ledger_total,
        **cost_rows(rev, ledger_total),
        "summary": [md(line) for line in rev.summary_after],
        "history": [
            {
                "round": h.round,
                "weakness": md(h.targeted),
                "rows": h.rows,
                "rejects": h.rejects,
                "summary_source": h.summary_source,
            }
            for h in history
        ],
        "history_truncated": len(index) > len(history),
        "repo_id": repo_id,
        "repo_hint": repo_id or "path/to/run",
        "sections": [*rev.sections, *(extra_sections or [])],
        "config_hash": info.config_hash,
        "config_yaml": _config_yaml(info),
    }
    path = template or default_template()
    try:
        version = f"hfadvisor run {info.run_id} round {rev.round} ({rev.finished_at})"
        text = _from_template(card_data(info, rows_total, rejects_total, responses, version), path, **kwargs)
    except jinja2.TemplateError as e:
        line = getattr(e, "lineno", None)
        raise ConfigError(f"card template {path}{f' line {line}' if line else ''}: {e.message or e}") from None
    except OSError as e:
        raise ConfigError(f"card template {path}: {e.strerror or e}") from None
    return text.rstrip("\n") + "\n"
