"""The round executor: Data Advisor rounds (weakness → generate → summarize) and Self-Instruct rounds.

Stages within a round depend on each other; the batch of generations does not, so it runs
concurrently. Nothing is written until a round is complete; the store then commits it
atomically, so an interrupted round simply never happened.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any, Protocol

from hfadvisor import card
from hfadvisor.config import RunConfig
from hfadvisor.errors import ModelOutputError, user_errors_first
from hfadvisor.llm import Budget, Completion, Endpoint, Ledger
from hfadvisor.plugins import Plugin
from hfadvisor.presets import Preset
from hfadvisor.records import PoolEntry, Revision, Timings
from hfadvisor.rundir.clock import call_seed, now
from hfadvisor.rundir.store import RunStore
from hfadvisor.stages import generate, selfinstruct, summarize, weakness
from hfadvisor.stages.text import normalize, strip_control
from hfadvisor.stages.validate import Validator

WEAKNESS_ATTEMPTS = 3
RAW_LIMIT = 4000


class Observer(Protocol):
    def round_started(self, r: int, total: int) -> None: ...
    def stage(self, name: str) -> None: ...
    def round_done(self, rev: Revision, rows_total: int) -> None: ...


class _Silent:
    def round_started(self, r: int, total: int) -> None:
        pass

    def stage(self, name: str) -> None:
        pass

    def round_done(self, rev: Revision, rows_total: int) -> None:
        pass


def _schema(module: Any, name: str = "SCHEMA") -> dict[str, Any] | None:
    """The stage's JSON schema for structured answers (a stage without one always answers as text)."""
    return getattr(module, name, None)


class Runner:
    """Runs the rounds of one run against one LLM client and appends them to the store."""

    def __init__(
        self,
        store: RunStore,
        config: RunConfig,
        preset: Preset,
        endpoint: Endpoint,
        model: str,
        observer: Observer | None = None,
        card_template: Any = None,
        plugins: list[Plugin] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.preset = preset
        self.endpoint = endpoint
        self.client = endpoint.client
        self.model = model
        self.observer = observer or _Silent()
        self.card_template = card_template
        self.plugins = plugins or []
        self.style = config.effective_prompt_style
        self.k = config.effective_examples_per_prompt
        self.run_prefix = store.info.run_id[:8]
        last = store.last
        assert last is not None, "a run always has round 0"
        self.summary = list(last.summary_after)
        self.pool = store.pool()
        self.validator = Validator(config.validation, preset.refusal_regex())
        for text in store.iter_prompts():
            self.validator.remember(text)
        self.ledger_total = Ledger()
        self.pool_len: dict[int, int] = {}  # round → pool size after it (the baseline's pipeline reads it)
        for rev in store.revisions():
            self.ledger_total = self.ledger_total.plus(rev.ledger)
            self.pool_len[rev.round] = rev.pool_size
        self.rows_total = sum(i.rows for i in store.index)

    async def run(self) -> None:
        for plugin in self.plugins:
            plugin.setup(self.store)
        if self.config.mode == "baseline":
            await self._run_baseline()
            return
        while self.store.rounds_done <= self.config.rounds:
            r = self.store.rounds_done
            self.observer.round_started(r, self.config.rounds)
            await self._finish(await self.advisor_round(r))

    async def _finish(self, rev: Revision) -> None:
        for plugin in self.plugins:
            await plugin.after_commit(self.store, rev)
        self.rows_total += rev.rows
        self.observer.round_done(rev, self.rows_total)

    async def _run_baseline(self) -> None:
        """Self-Instruct rounds, up to `pipeline_depth` generating at once.

        Round r draws its examples from the pool as it was after round r - depth, so it can
        start as soon as that round is committed; rounds are still validated and committed in
        order. The data depends on the depth, never on timing (depth 1 = the classic loop).
        """
        depth = self.config.pipeline_depth
        last = self.store.rounds_done - 1
        nxt = last + 1
        inflight: dict[int, asyncio.Task[tuple[list[Any], Ledger, str, float]]] = {}
        try:
            while last < self.config.rounds:
                while nxt <= self.config.rounds and nxt - depth <= last:
                    limit = self.pool_len[max(nxt - depth, 0)]
                    inflight[nxt] = asyncio.create_task(self._baseline_generate(nxt, limit))
                    nxt += 1
                r = last + 1
                self.observer.round_started(r, self.config.rounds)
                results, ledger, started, t0 = await inflight.pop(r)
                await self._finish(self._baseline_commit(r, results, ledger, started, t0))
                last = r
        finally:
            for task in inflight.values():
                task.cancel()
            await asyncio.gather(*inflight.values(), return_exceptions=True)

    # ------------------------------------------------------------------ stages
    def _examples(self, r: int, slot: int, pool_limit: int | None = None) -> list[PoolEntry]:
        pool = self.pool if pool_limit is None else self.pool[:pool_limit]
        rng = random.Random(call_seed(self.config.seed, "examples", r, slot))
        return rng.sample(pool, min(self.k, len(pool)))

    async def _weakness(self, r: int, ledger: Ledger) -> tuple[str, int, str | None]:
        """(weakness, attempts, the prompt if plugins added feedback to it, else None).

        The plain prompt is the preset's template over `summary_before`, already in the
        revision; storing it again would grow every record by the whole summary.
        """
        notes = [n for p in self.plugins if (n := p.weakness_feedback(r, self.summary))]
        prompt = weakness.build_prompt(self.preset, self.style, self.summary, "\n".join(notes) or None)
        stop = self.preset.stops(self.style, "weakness")
        candidate = ""
        for attempt in range(1, WEAKNESS_ATTEMPTS + 1):
            out = await self.client.complete(
                prompt,
                self.config.sampling.weakness,
                stage="weakness",
                seed=call_seed(self.config.seed, "weakness", r, attempt),
                stop=stop,
                ledger=ledger,
                schema=_schema(weakness),
            )
            parsed = (
                weakness.parse_json(out.text, self.preset) if out.structured else weakness.parse(out.text, self.preset)
            )
            if parsed.ok and parsed.value:  # a rejected answer counts as no answer: try again
                candidate = parsed.value
                covered = {normalize(line) for line in self.summary}
                if normalize(candidate) not in covered:
                    return candidate, attempt, prompt if notes else None
        if not candidate:
            raise ModelOutputError(
                f"round {r}: the model gave no usable weakness in {WEAKNESS_ATTEMPTS} attempts; check the endpoint's "
                "model and --prompt-style, then rerun to resume"
            )
        return candidate, WEAKNESS_ATTEMPTS, prompt if notes else None

    async def _batch(
        self, r: int, stage: str, weakness_text: str | None, ledger: Ledger, pool_limit: int | None = None
    ) -> list[tuple[int, list[PoolEntry], Completion]]:
        sampling = self.config.sampling.generate if stage == "generate" else self.config.sampling.selfinstruct
        stop = self.preset.stops(self.style, stage)
        schema = _schema(generate if stage == "generate" else selfinstruct)

        async def one(slot: int) -> tuple[int, list[PoolEntry], Completion]:
            examples = self._examples(r, slot, pool_limit)
            shots = [e.example() for e in examples]
            if stage == "generate":
                prompt = generate.build_prompt(self.preset, self.style, shots, weakness_text or "")
            else:
                prompt = selfinstruct.build_prompt(self.preset, self.style, shots)
            out = await self.client.complete(
                prompt,
                sampling,
                stage=stage,
                seed=call_seed(self.config.seed, stage, r, slot),
                stop=stop,
                ledger=ledger,
                schema=schema,
            )
            return slot, examples, out

        with user_errors_first():
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(slot)) for slot in range(self.config.batch_size)]
        return [t.result() for t in tasks]

    def _validate(
        self, r: int, stage: str, results: list[tuple[int, list[PoolEntry], Completion]], weakness_text: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows, rejects = [], []
        source = "advisor" if stage == "generate" else "baseline"
        module = generate if stage == "generate" else selfinstruct
        for slot, examples, out in results:
            row_id = f"{self.run_prefix}-{r:05d}-{slot:03d}"
            raw = out.text
            parsed = module.parse_json(raw) if out.structured else module.parse(raw)
            text = parsed.value or ""
            reason = parsed.reason if not parsed.ok else self.validator.check(text)  # parse rejects first
            if reason:
                rejects.append(
                    {
                        "id": row_id,
                        "round": r,
                        "slot": slot,
                        "stage": stage,
                        "reason": reason,
                        "text": text[:RAW_LIMIT],
                        "raw": strip_control(raw)[:RAW_LIMIT],
                        "weakness": weakness_text,
                        "model": self.model,
                    }
                )
                continue
            rows.append(
                {
                    "id": row_id,
                    "round": r,
                    "slot": slot,
                    "prompt": text,
                    "weakness": weakness_text,
                    "source": source,
                    "model": self.model,
                    "exemplar_ids": [e.id for e in examples],
                }
            )
        return rows, rejects

    # ------------------------------------------------------------------ rounds
    async def advisor_round(self, r: int) -> Revision:
        started, t0 = now(), time.monotonic()
        ledger = Ledger()
        timings = Timings()

        self.observer.stage("weakness")
        weak, attempts, weakness_prompt = await self._weakness(r, ledger)
        timings.weakness = time.monotonic() - t0

        self.observer.stage("generate")
        t1 = time.monotonic()
        results = await self._batch(r, "generate", weak, ledger)
        rows, rejects = self._validate(r, "generate", results, weak)
        timings.generate = time.monotonic() - t1

        self.observer.stage("summarize")
        t2 = time.monotonic()
        new_examples = [row["prompt"] for row in rows] if self.config.summary_sees_examples else None
        prompt = summarize.build_prompt(self.preset, self.style, self.summary, weak, new_examples)
        mode = self.preset.prompt_set(self.style).summary_output
        sampling = self.config.sampling.summarize
        budget = await self.endpoint.budget(prompt, sampling.max_new_tokens)  # the rewrite must fit the server
        out = await self.client.complete(
            prompt,
            sampling.model_copy(update={"max_new_tokens": budget.max_new_tokens}),
            stage="summarize",
            seed=call_seed(self.config.seed, "summarize", r),
            stop=self.preset.stops(self.style, "summarize"),
            ledger=ledger,
            schema=_schema(summarize, "SCHEMA_APPEND" if mode == "append" else "SCHEMA"),
        )
        update = self._summary_update(out, weak, mode, budget)
        timings.summarize = time.monotonic() - t2

        added = [PoolEntry(id=rows[0]["id"], prompt=rows[0]["prompt"], category=weak)] if rows else []
        rev = self._revision(r, started, t0, ledger, timings, rows, rejects, weak, added)
        rev.weakness_attempts = attempts
        rev.weakness_prompt = weakness_prompt
        rev.summary_sees_examples = self.config.summary_sees_examples
        rev.summary_after = update.summary
        rev.summary_source = update.source
        rev.summary_note = update.note
        rev = self._commit(rev, rows, rejects)
        self.summary = update.summary
        self.pool.extend(added)
        self.pool_len[r] = len(self.pool)
        return rev

    def _summary_update(self, out: Completion, weak: str, mode: str, budget: Budget) -> summarize.SummaryUpdate:
        """Parse the summary answer; one cut off by the token budget is a note, not lost lines."""
        if out.finish_reason == "length":
            limit = f"{budget.max_new_tokens}-token budget"
            if budget.prompt_tokens is not None:
                limit += f" ({budget.prompt_tokens} prompt tokens, {budget.counted})"
            return summarize.fallback(self.summary, weak, f"answer cut off at the {limit}")
        delimiter = self.preset.delimiter(self.style)
        if out.structured:
            return summarize.parse_json(out.text, self.summary, weak, mode, delimiter=delimiter)
        return summarize.parse(out.text, self.summary, weak, mode, delimiter=delimiter)

    async def _baseline_generate(self, r: int, pool_limit: int) -> tuple[list[Any], Ledger, str, float]:
        started, t0 = now(), time.monotonic()
        ledger = Ledger()
        self.observer.stage("selfinstruct")
        results = await self._batch(r, "selfinstruct", None, ledger, pool_limit)
        return results, ledger, started, t0

    def _baseline_commit(self, r: int, results: list[Any], ledger: Ledger, started: str, t0: float) -> Revision:
        timings = Timings(generate=time.monotonic() - t0)
        rows, rejects = self._validate(r, "selfinstruct", results, None)
        added = [PoolEntry(id=row["id"], prompt=row["prompt"], category=None) for row in rows]
        rev = self._revision(r, started, t0, ledger, timings, rows, rejects, None, added)
        rev.summary_source = "unchanged"
        rev = self._commit(rev, rows, rejects)
        self.pool.extend(added)
        self.pool_len[r] = len(self.pool)
        return rev

    def _revision(
        self,
        r: int,
        started: str,
        t0: float,
        ledger: Ledger,
        timings: Timings,
        rows: list[dict[str, Any]],
        rejects: list[dict[str, Any]],
        weak: str | None,
        added: list[PoolEntry],
    ) -> Revision:
        timings.total = time.monotonic() - t0
        return Revision(
            round=r,
            mode=self.config.mode,
            shard="",
            rows=len(rows),
            sha256="",
            rejects_shard="",
            rejects=len(rejects),
            rejects_sha256="",
            reject_reasons=dict(Counter(x["reason"] for x in rejects)),
            card="",
            summary_before=list(self.summary),
            summary_after=list(self.summary),
            weakness=weak,
            pool_added=added,
            pool_size=len(self.pool) + len(added),
            rounds_planned=self.config.rounds,
            config_hash=self.store.info.config_hash,
            model=self.model,
            endpoints=self.client.endpoint_names,
            api=self.config.api,
            started_at=started,
            finished_at=now(),
            timings=timings,
            ledger=ledger,
        )

    def _commit(self, rev: Revision, rows: list[dict[str, Any]], rejects: list[dict[str, Any]]) -> Revision:
        from hfadvisor.records import RevisionIndex

        for plugin in self.plugins:
            plugin.before_commit(rev, rows, rejects)
        self.ledger_total = self.ledger_total.plus(rev.ledger)
        preview = [*self.store.index, RevisionIndex.of(rev)]
        text = card.render(
            self.store.info,
            rev,
            preview,
            rounds_planned=self.config.rounds,
            ledger_total=self.ledger_total,
            template=self.card_template,
        )
        return self.store.commit_round(rev, rows, rejects, text)
