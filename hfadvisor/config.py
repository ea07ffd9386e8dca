"""Run configuration: one pydantic model that the CLI flags and the YAML file both fill.

Fields split in two groups. *Method* fields change what data a run produces (preset,
prompts, sampling, batch size, ...): they are hashed into `config_hash`, and resuming a run
with different method fields is refused. *Operational* fields (endpoints, concurrency,
retries, rounds) may change between sessions of the same run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hfadvisor.errors import ConfigError

Mode = Literal["advisor", "baseline"]
Api = Literal["tgi", "chat", "completions"]
COMPLETIONS_TEXT_ONLY = "structured on needs --api chat or tgi: the completions API is sent text prompts only"
PromptStyle = Literal["completion", "instruct", "paper"]
STAGES = ("weakness", "generate", "summarize", "selfinstruct")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Sampling(_Strict):
    """Sampling parameters sent with every call of one stage."""

    temperature: float = Field(0.9, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float | None = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling (null in YAML: off)")
    max_new_tokens: int = Field(32, ge=1, le=32768, description="tokens per answer at most")
    stop: list[str] = Field(default_factory=list, description="stop sequences (repeat the flag for several)")


class StageSampling(_Strict):
    """Per-stage sampling: the paper's values are the defaults."""

    weakness: Sampling = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=32)
    generate: Sampling = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=512)
    # the reference code's 4096 (1024 cut full rewrites off past ~150 lines); lowered per call to what the
    # endpoint's max_total_tokens leaves after the prompt. Runs stored with 1024 keep it (method field).
    summarize: Sampling = Sampling(temperature=0.0, top_p=None, max_new_tokens=4096)
    selfinstruct: Sampling = Sampling(temperature=0.9, top_p=0.95, max_new_tokens=256)


class Validation(_Strict):
    """How generated queries are cleaned and which ones are rejected."""

    min_chars: int = Field(20, ge=0, description="shorter queries are rejected")
    max_chars: int = Field(1000, ge=1, description="longer queries are rejected")
    reject_refusals: bool = Field(
        True, description="reject a generated query that is a refusal (the preset's refusal pattern)"
    )
    reject_near_duplicates: bool = Field(
        True, description="reject a query equal to a kept one up to case, punctuation and spacing"
    )


class RetryPolicy(_Strict):
    """Retries for transient endpoint failures (429, 503, timeouts, connection errors)."""

    max_attempts: int = Field(8, ge=1, le=100, description="attempts per call before giving up")
    initial_backoff: float = Field(
        0.5, ge=0.0, description="seconds of the first backoff (grows exponentially, with jitter)"
    )
    max_backoff: float = Field(30.0, ge=0.0, description="longest wait between two attempts, in seconds")
    give_up_after: float = Field(600.0, gt=0.0, description="seconds spent retrying one call before giving up")


class RunConfig(_Strict):
    # --- method (hashed) ---
    mode: Mode = Field("advisor", description="set by the command: `hfadvisor run` (advisor) or `baseline`")
    preset: str = Field("safety", description="built-in preset name or path to a preset YAML file")
    seed_summary: str | None = Field(None, description="file with one summary line per line (overrides preset)")
    seed_pool: str | None = Field(None, description="file with one seed query per line (overrides preset)")
    batch_size: int = Field(12, ge=1, le=1024, description="generations per round")
    examples_per_prompt: int | None = Field(None, ge=0, le=50, description="default 3 (advisor), 5 (baseline)")
    summary_sees_examples: bool = Field(
        True, description="summary update sees the new examples (paper) or only the weakness (reference code)"
    )
    prompt_style: PromptStyle | None = Field(
        None,
        description="completion (few-shot), instruct, or paper (the reference code's raw-text prompts); "
        "default: completion for tgi, instruct for chat",
    )
    prompts: str | None = Field(
        None, description="YAML file of prompt templates (style -> stage -> Jinja text) laid over the preset's"
    )
    sampling: StageSampling = StageSampling()
    validation: Validation = Validation()
    seed: int = Field(0, description="seeds exemplar sampling and per-call generation seeds")
    pipeline_depth: int = Field(
        1, ge=1, le=1024, description="baseline only: rounds generating at once (round r sees the pool of r-depth)"
    )
    lanes: int = Field(
        1,
        ge=1,
        le=64,
        description="advisor only: weaknesses per round, each with its own batch; one summary update takes all "
        "(1 = the paper)",
    )
    # --- operational (not hashed) ---
    rounds: int = Field(3, ge=1, le=10_000_000, description="total generated rounds (round 0 holds the seeds)")
    endpoints: list[str] = Field(default_factory=list, description="TGI/OpenAI-compatible base URLs; empty = embedded")
    api: Api = Field(
        "tgi",
        description="tgi (native /generate API), chat (/v1/chat/completions) or completions (/v1/completions: "
        "raw text, as /generate; vLLM, llama.cpp)",
    )
    model: str | None = Field(None, description="model name sent to chat endpoints / recorded in rows")
    chat_template: str | None = Field(
        None,
        description="tgi and completions apis: render prompts with this Jinja chat template file ('server' = from /info)",
    )
    card_template: str | None = Field(None, description="Jinja dataset-card template file (default: built-in)")
    concurrency: int = Field(
        16,
        ge=1,
        le=4096,
        description="max requests in flight; lowered automatically while the endpoint answers overloaded",
    )
    structured: Literal["auto", "on", "off"] = Field(
        "auto",
        description="JSON-schema answers where the endpoint offers them, for instruct/paper prompts (auto); "
        "required, in every style (on); or text only (off)",
    )
    # --- outside systems (operational) ---
    push_to_hub: str | None = Field(None, description="Hub dataset repo id: push each round as its own commit + tag")
    hub_private: bool = Field(True, description="create the Hub repo private (harmful prompts); false = public")
    hub_tag_prefix: str = Field("round-", description="tag name prefix; tags are PREFIX + 4-digit round")
    label_every: int | None = Field(None, ge=1, description="push new rows to Argilla every N rounds")
    argilla_dataset: str | None = Field(None, description="Argilla dataset name for labelling")
    argilla_workspace: str | None = Field(None, description="Argilla workspace")
    use_labels: bool = Field(False, description="feed pulled human labels into the weakness prompt")
    metrics: bool = Field(True, description="compute coverage/diversity metrics per round for the card")
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    retry: RetryPolicy = RetryPolicy()
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="token budget of the whole run (prompt + completion, resumed sessions included): stop at the "
        "round boundary before the next round would pass it",
    )
    price_input: float | None = Field(None, ge=0, description="price per 1M input (prompt) tokens: cost in card/log")
    price_output: float | None = Field(None, ge=0, description="price per 1M output (completion) tokens")

    @field_validator("endpoints")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {url!r} must start with http:// or https://")
        return [u.rstrip("/") for u in urls]

    # Operational fields never enter the hash: they may differ between sessions of one run.
    OPERATIONAL: ClassVar[tuple[str, ...]] = (
        "rounds",
        "endpoints",
        "api",
        "model",
        "chat_template",
        "card_template",
        "concurrency",
        "structured",
        "timeout",
        "retry",
        "push_to_hub",
        "hub_private",
        "hub_tag_prefix",
        "label_every",
        "argilla_dataset",
        "argilla_workspace",
        "use_labels",
        "metrics",
        "max_tokens",
        "price_input",
        "price_output",
    )

    @model_validator(mode="after")
    def _check_mode(self) -> RunConfig:
        if self.api == "completions" and self.structured == "on":
            raise ValueError(COMPLETIONS_TEXT_ONLY)
        if self.mode == "advisor" and self.pipeline_depth != 1:
            raise ValueError(
                "pipeline_depth applies to the baseline only: each advisor round needs the previous summary"
            )
        if self.mode == "baseline" and self.lanes != 1:
            raise ValueError("lanes applies to advisor runs only: the baseline has no weakness to split")
        return self

    @property
    def effective_prompt_style(self) -> PromptStyle:
        if self.prompt_style:
            return self.prompt_style
        return "instruct" if self.api == "chat" or self.chat_template else "completion"

    @property
    def effective_examples_per_prompt(self) -> int:
        if self.examples_per_prompt is not None:
            return self.examples_per_prompt
        return 3 if self.mode == "advisor" else 5

    # Method fields added after runs were stored: a stored method without the key meant this value.
    METHOD_ADDED: ClassVar[dict[str, Any]] = {"lanes": 1}

    def method_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.OPERATIONAL))


def config_hash(method: dict[str, Any]) -> str:
    """Stable short hash of the method fields plus the resolved preset content."""
    blob = json.dumps(method, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        known = ", ".join(sorted(RunConfig.model_fields))
        msg = f"unknown key (known keys: {known})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (validated later, together with the flags)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of config keys, got {type(data).__name__}")
    return data


def build_config(*layers: dict[str, Any], source: str = "config") -> RunConfig:
    """Merge layers (later wins, nested dicts merged) and validate into a RunConfig."""
    merged: dict[str, Any] = {}
    for layer in layers:
        _deep_merge(merged, layer)
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_one_line(e, source)) from None


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        elif isinstance(v, dict):  # a copy: merging later layers must not change this one (the stored method)
            into[k] = copy.deepcopy(v)
        else:
            into[k] = v
