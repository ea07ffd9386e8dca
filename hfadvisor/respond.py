"""Answer every prompt of a run with a target chat model, as an append-only revision next to the rounds.

The answers are stored by `hfadvisor.rundir.responses` (layout and commit there). Like rounds, a
data round's answers are committed whole (shard first, record last), so an interrupted
`respond` keeps every finished round and the next call answers only the rest: also the rounds
a resumed run added since. Answering with other options than the stored `config.json` is
refused, so one response column never mixes two models or two samplings.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from hfadvisor.aio import run_sync
from hfadvisor.config import Sampling
from hfadvisor.errors import ConfigError, RunStateError, user_errors_first
from hfadvisor.ledger import Ledger
from hfadvisor.llm import EndpointSpec, connect, load_chat_template
from hfadvisor.rundir.clock import call_seed, now
from hfadvisor.rundir.responses import (
    ResponseConfig,
    ResponseRecord,
    commit_round,
    committed,
    read_config,
    write_config,
)
from hfadvisor.rundir.store import RunStore


@dataclass
class RespondResult:
    """What one `respond` call did, for the caller to report."""

    model: str
    rounds_answered: int  # data rounds answered by this call
    rows_answered_now: int
    rows_with_response: int  # answered rows of the run, earlier calls included
    rows_total: int
    chat_template: str  # how prompts were rendered: "none", "server sha256:…", "file sha256:…", "server-side"
    ledger: Ledger

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ledger": self.ledger.model_dump(mode="json")}


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
    target: EndpointSpec | str | list[str],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int = 0,
    on_round: Callable[[int, int, int], None] | None = None,
) -> RespondResult:
    """Answer every row of `run_dir` that has no answer yet.

    Args:
        run_dir: a run directory (opened without repair: a run being written is not touched).
        target: the target model's endpoint (an `EndpointSpec`, or its URL(s) with the defaults);
            its `chat_template` (tgi api): "server" or a template file (default: the server's, if it has one).
        max_new_tokens, temperature, top_p, seed: sampling (greedy by default; seeds per row otherwise).
        on_round: called as `on_round(round, rows_answered_so_far, rows_total)` after each committed round.

    Returns:
        What was answered; the answers themselves are in the run's `responses/`.

    Raises:
        ConfigError: bad sampling options or a chat template with the chat api.
        RunStateError: the run has responses made with other options, or is not a run.
        EndpointError: the target kept failing (finished rounds are kept).
    """
    spec = EndpointSpec.of(target)
    api, model = spec.api, spec.model
    store = RunStore.open(run_dir, repair=False)
    try:
        sampling = Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    async with connect(replace(spec, chat_template=None)) as endpoint:  # loaded and labelled below
        client, info = endpoint.client, endpoint.info
        template, template_spec = _template_spec(api, spec.chat_template, info)
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
            write_config(store, config)
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
            reasons: dict[str, int] = {}
            for row in rows:
                reasons[row["finish_reason"]] = reasons.get(row["finish_reason"], 0) + 1
            record = ResponseRecord(
                round=r,
                shard="",  # filled in by commit_round
                rows=len(rows),
                sha256="",
                data_sha256=store.revision(r).sha256,
                completion_tokens=sum(row["completion_tokens"] for row in rows),
                finish_reasons=reasons,
                seconds=round(time.monotonic() - t0, 3),
                finished_at=now(),
                ledger=ledger,
            )
            commit_round(store, list(rows), record)
            answered += len(rows)
            if on_round:
                on_round(r, answered, rows_total)

        # Rounds are independent: several in flight keep the endpoints busy (the client bounds requests).
        window = asyncio.Semaphore(max(2, spec.concurrency // 4))

        async def guarded(r: int, shard: str) -> None:
            async with window:
                await one_round(r, shard)

        with user_errors_first():
            async with asyncio.TaskGroup() as tg:
                for entry in pending:
                    tg.create_task(guarded(entry.round, entry.shard or ""))
    return RespondResult(
        model=name,
        rounds_answered=len(pending),
        rows_answered_now=sum(e.rows for e in pending),
        rows_with_response=answered,
        rows_total=rows_total,
        chat_template=template_spec,
        ledger=client.ledger,
    )


def respond_run(run_dir: str | Path, target: EndpointSpec | str | list[str], **options: Any) -> RespondResult:
    """Blocking `respond` (same arguments); works inside a running event loop too."""
    return run_sync(respond(run_dir, target, **options))
