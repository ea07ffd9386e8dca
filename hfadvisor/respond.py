"""Answer every prompt of a run with a target chat model, as an append-only revision next to the rounds.

Layout (the run's own files are never touched)::

    responses/config.json          written once: target model, api, sampling, chat template
    responses/round-00007.parquet  answers to the rows of data round 7 (id, response, model, ...)
    responses/round-00007.json     its record (sha256 of both shards, counts); written last = commit point

Like rounds, a data round's answers are committed whole (shard first, record last), so an
interrupted `respond` keeps every finished round and the next call answers only the rest:
also the rounds a resumed run added since. Answering with other options than the stored
`config.json` is refused, so one response column never mixes two models or two samplings.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features, Value
from pydantic import BaseModel, ValidationError

from hfadvisor import __version__
from hfadvisor.aio import run_sync
from hfadvisor.config import RetryPolicy, Sampling
from hfadvisor.errors import ConfigError, RunStateError, user_errors_first
from hfadvisor.llm import Ledger, LLMClient, load_chat_template
from hfadvisor.loop import call_seed, now
from hfadvisor.records import arrow_schema
from hfadvisor.rundir.store import RunStore, atomic_write, parquet_bytes, round_name, sha256

RESPONSES_DIR = "responses"
RESPONSE_FEATURES = Features(
    {
        "id": Value("string"),
        "round": Value("int32"),
        "response": Value("string"),
        "model": Value("string"),
        "finish_reason": Value("string"),
        "completion_tokens": Value("int32"),
    }
)
RESPONSE_SCHEMA = arrow_schema(RESPONSE_FEATURES)


class ResponseConfig(BaseModel):
    """What makes a set of responses what it is; resuming with anything else is refused."""

    model: str
    api: str
    sampling: Sampling
    chat_template: str  # "none", "server sha256:…", "file sha256:…" (tgi api) or "server-side" (chat api)
    seed: int = 0
    created_at: str = ""
    hfadvisor_version: str = __version__

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"created_at", "hfadvisor_version"})


class ResponseRecord(BaseModel):
    round: int
    shard: str
    rows: int
    sha256: str
    data_sha256: str | None  # the data shard these answers belong to
    completion_tokens: int
    finish_reasons: dict[str, int]
    seconds: float
    finished_at: str
    ledger: Ledger = Ledger()


def _dir(store: RunStore) -> Path:
    return store.path / RESPONSES_DIR


def read_config(store: RunStore) -> ResponseConfig | None:
    path = _dir(store) / "config.json"
    if not path.is_file():
        return None
    try:
        return ResponseConfig.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError):
        raise RunStateError(f"{path} is damaged: remove the responses/ folder to answer again") from None


def committed(store: RunStore) -> dict[int, ResponseRecord]:
    """Records of the rounds whose answers are complete, verified and still match their data shard."""
    out: dict[int, ResponseRecord] = {}
    for entry in store.index:
        path = _dir(store) / f"{round_name(entry.round)}.json"
        if not entry.shard or not path.is_file():
            continue
        try:
            rec = ResponseRecord.model_validate_json(path.read_bytes())
        except (ValidationError, ValueError):
            continue  # a torn record: the round is answered again
        shard = store.path / rec.shard
        if rec.data_sha256 != store.revision(entry.round).sha256:
            continue
        if not shard.is_file() or sha256(shard.read_bytes()) != rec.sha256:
            continue
        out[entry.round] = rec
    return out


def responses_table(store: RunStore, upto: int | None = None) -> pa.Table:
    """Every committed answer of rounds 0..upto (all rounds by default)."""
    recs = [r for k, r in sorted(committed(store).items()) if upto is None or k <= upto]
    tables = [pq.read_table(store.path / r.shard) for r in recs]
    return pa.concat_tables(tables).cast(RESPONSE_SCHEMA) if tables else RESPONSE_SCHEMA.empty_table()


def attach_responses(store: RunStore, table: pa.Table, features: Features) -> tuple[pa.Table, Features]:
    """Add a `response` column (null where a row has no answer yet) when the run has responses."""
    if read_config(store) is None:
        return table, features
    answers = responses_table(store)
    by_id = dict(zip(answers.column("id").to_pylist(), answers.column("response").to_pylist(), strict=True))
    column = pa.array([by_id.get(i) for i in table.column("id").to_pylist()], type=pa.string())
    features = Features({**features, "response": Value("string")})
    table = table.append_column("response", column)
    return table.cast(arrow_schema(features)), features


def _template_spec(api: str, requested: str | None, info: dict[str, Any]) -> tuple[Any, str]:
    """The chat template to render prompts with (tgi api), and how it is recorded."""
    if api == "chat":
        if requested:
            raise ConfigError("--chat-template applies to --api tgi; chat servers apply the model's own template")
        return None, "server-side"
    spec = requested or ("server" if info.get("chat_template") else None)
    if spec is None:
        return None, "none"
    template = load_chat_template(spec, info)
    source = info.get("chat_template") if spec == "server" else Path(spec).read_text(encoding="utf-8")
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return template, f"{'server' if spec == 'server' else 'file'} sha256:{digest}"


async def respond(
    run_dir: str | Path,
    endpoints: list[str],
    *,
    api: str = "tgi",
    model: str | None = None,
    token: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float | None = None,
    chat_template: str | None = None,
    seed: int = 0,
    concurrency: int = 16,
    timeout: float = 120.0,
    retry: RetryPolicy | None = None,
    on_round: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Answer every row of `run_dir` that has no answer yet; returns counts for the caller to report.

    `on_round(round, rows_answered_so_far, rows_total)` is called after each committed round.
    """
    store = RunStore.open(run_dir, repair=False)
    try:
        sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    async with LLMClient(
        endpoints, api=api, model=model, token=token, concurrency=concurrency, timeout=timeout, retry=retry
    ) as client:
        info = await client.info()
        template, template_spec = _template_spec(api, chat_template, info)
        name = model or str(info.get("model_id") or client.endpoint_names[0])
        config = ResponseConfig(
            model=name,
            api=api,
            sampling=sampling,
            chat_template=template_spec,
            seed=seed,
            created_at=now(),
        )
        stored = read_config(store)
        if stored is not None and stored.identity() != config.identity():
            changed = [k for k, v in config.identity().items() if stored.identity().get(k) != v]
            raise RunStateError(
                f"{store.path} already has responses made with other options ({', '.join(changed)}: "
                f"{', '.join(f'{stored.identity()[k]!r}' for k in changed)}): pass the same options to continue them"
            )
        if stored is None:
            atomic_write(_dir(store) / "config.json", (config.model_dump_json(indent=1) + "\n").encode())
        client.chat_template = template

        done = committed(store)
        pending = [e for e in store.index if e.shard and e.round not in done]
        rows_total = sum(e.rows for e in store.index)
        answered = sum(r.rows for r in done.values())

        async def one_round(r: int, shard: str) -> None:
            nonlocal answered
            t0 = time.monotonic()
            table = pq.read_table(store.path / shard, columns=["id", "prompt"])
            ledger = Ledger()

            async def answer(row_id: str, prompt: str) -> dict[str, Any]:
                out = await client.complete(
                    prompt,
                    sampling,
                    stage="respond",
                    seed=None if temperature == 0 else call_seed(seed, "respond", row_id),
                    ledger=ledger,
                )
                return {
                    "id": row_id,
                    "round": r,
                    "response": out.text,
                    "model": name,
                    "finish_reason": out.finish_reason or "",
                    "completion_tokens": out.completion_tokens,
                }

            ids, prompts = table.column("id").to_pylist(), table.column("prompt").to_pylist()
            rows = await asyncio.gather(*(answer(i, p) for i, p in zip(ids, prompts, strict=True)))
            data = parquet_bytes(list(rows), RESPONSE_SCHEMA)
            rel = f"{RESPONSES_DIR}/{round_name(r)}.parquet"
            atomic_write(store.path / rel, data)
            reasons: dict[str, int] = {}
            for row in rows:
                reasons[row["finish_reason"]] = reasons.get(row["finish_reason"], 0) + 1
            record = ResponseRecord(
                round=r,
                shard=rel,
                rows=len(rows),
                sha256=sha256(data),
                data_sha256=store.revision(r).sha256,
                completion_tokens=sum(row["completion_tokens"] for row in rows),
                finish_reasons=reasons,
                seconds=round(time.monotonic() - t0, 3),
                finished_at=now(),
                ledger=ledger,
            )
            atomic_write(_dir(store) / f"{round_name(r)}.json", record.model_dump_json(indent=1).encode())
            answered += len(rows)
            if on_round:
                on_round(r, answered, rows_total)

        # Rounds are independent: several in flight keep the endpoints busy (the client bounds requests).
        window = asyncio.Semaphore(max(2, concurrency // 4))

        async def guarded(r: int, shard: str) -> None:
            async with window:
                await one_round(r, shard)

        with user_errors_first():
            async with asyncio.TaskGroup() as tg:
                for entry in pending:
                    tg.create_task(guarded(entry.round, entry.shard or ""))
    return {
        "model": name,
        "rounds_answered": len(pending),
        "rows_answered_now": sum(e.rows for e in pending),
        "rows_with_response": answered,
        "rows_total": rows_total,
        "chat_template": template_spec,
        "ledger": client.ledger.model_dump(mode="json"),
    }


def respond_run(run_dir: str | Path, endpoints: list[str], **options: Any) -> dict[str, Any]:
    """Blocking `respond`."""
    return run_sync(respond(run_dir, endpoints, **options))


def status(run_dir: str | Path) -> dict[str, Any]:
    """How far a run's responses are: config, rows answered, rounds pending (for `respond --status`)."""
    store = RunStore.open(run_dir, repair=False)
    config = read_config(store)
    done = committed(store)
    return {
        "config": json.loads(config.model_dump_json()) if config else None,
        "rows_total": sum(e.rows for e in store.index),
        "rows_with_response": sum(r.rows for r in done.values()),
        "rounds_pending": [e.round for e in store.index if e.shard and e.round not in done],
    }
