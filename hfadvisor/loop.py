"""The round executor: Data Advisor rounds (weakness → generate → summarize) and Self-Instruct rounds.

Stages within a round depend on each other; the batch of generations does not, so it runs
concurrently. With `lanes` K > 1 a round asks for K distinct weaknesses, generates K batches at
once and folds all K into the summary with one call. Nothing is written until a round is
complete; the store then commits it atomically, so an interrupted round simply never happened.

Committing round r (metrics, card, shards, Hub push) runs while round r + 1's weakness call is
in flight: that call needs only round r's summary, known before the commit. Round r's commit
always finishes before round r + 1's starts, so revisions stay in order and each holds its own
round's metrics; a crash in between leaves round r committed or absent, never half-written.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any, Protocol

from hfadvisor import card
from hfadvisor.budget import TokenBudget, round_prices
from hfadvisor.config import RunConfig
from hfadvisor.errors import ConfigError, ModelOutputError, user_errors_first
from hfadvisor.ledger import Ledger
from hfadvisor.llm import Budget, Completion, Endpoint
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
    """What the runner reports as it goes (the CLI's live display, the Space's queue)."""

    def round_started(self, r: int, total: int) -> None: ...
    def stage(self, name: str) -> None: ...
    def round_done(self, rev: Revision, rows_total: int) -> None: ...


class _Silent(Observer):
    """The Python API's default: the protocol's methods do nothing."""


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
        # auto: JSON schemas where the model is instructed and answers in prose (instruct). A few-shot
        # completion prompt already ends on "Request:" and is cut at the line's end; constraining it to
        # JSON made the embedded SmolLM2's requests garbled and 4.6x slower (6 calls: 207 s vs 45 s).
        # The paper style reproduces the reference code's raw-text calls, so it sends no grammar either.
        self.schemas = config.structured == "on" or (config.structured == "auto" and self.style == "instruct")
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
        # the run's token budget counts every committed round, earlier sessions included
        self.budget = TokenBudget.of(config.max_tokens, [rev.ledger for rev in store.revisions() if rev.round])
        self.stopped: str | None = None  # why the run stopped before `rounds` (the budget), for the caller
        template = preset.prompt_set(self.style).summarize
        if config.mode == "advisor" and config.lanes > 1 and "weaknesses" not in template:
            raise ConfigError(
                f"--lanes {config.lanes} needs a {self.style} summarize prompt that lists `weaknesses`; "
                "the one given names only `weakness`: add the list to it or use --lanes 1"
            )
        # A plugin that reads round r's outcome into round r + 1's weakness prompt (human labels)
        # needs the commit first; otherwise the commit overlaps the next weakness call.
        self.overlap = all(type(p).weakness_feedback is Plugin.weakness_feedback for p in self.plugins)

    async def run(self) -> None:
        for plugin in self.plugins:
            plugin.setup(self.store)
        if self.config.mode == "baseline":
            await self._run_baseline()
            return
        pending: asyncio.Task[None] | None = None  # the previous round's commit
        try:
            r = self.store.rounds_done
            while r <= self.config.rounds:
                if not self.budget.allows():
                    self._budget_stop(r - 1)
                    break
                self.observer.round_started(r, self.config.rounds)
                if pending is not None and not self.overlap:
                    await pending
                prepared = await self._advisor_prepare(r)
                self.budget.add(prepared[0].ledger)
                if pending is not None:
                    await pending  # round r - 1 is on disk before round r is written
                pending = asyncio.create_task(self._commit_and_finish(*prepared))
                r += 1
            await pending if pending is not None else None
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait({pending})  # a started commit completes (it is atomic either way)

    async def _commit_and_finish(
        self, rev: Revision, rows: list[dict[str, Any]], rejects: list[dict[str, Any]]
    ) -> None:
        """Metrics, card and the write in a worker thread (the event loop keeps serving the next
        round's calls), then the after-commit hooks."""
        await self._finish(await asyncio.to_thread(self._commit, rev, rows, rejects))

    def _budget_stop(self, last: int) -> None:
        self.stopped = self.budget.message(last, self.config.rounds)
        note = getattr(self.observer, "budget_stopped", None)
        if note is not None:
            note(self.stopped)

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
                # a round starts only if it fits the budget with the rounds already generating
                while nxt <= self.config.rounds and nxt - depth <= last and self.budget.allows(len(inflight) + 1):
                    limit = self.pool_len[max(nxt - depth, 0)]
                    inflight[nxt] = asyncio.create_task(self._baseline_generate(nxt, limit))
                    nxt += 1
                if not inflight:
                    self._budget_stop(last)
                    break
                r = last + 1
                self.observer.round_started(r, self.config.rounds)
                results, ledger, started, t0 = await inflight.pop(r)
                self.budget.add(ledger)
                await self._finish(self._baseline_commit(r, results, ledger, started, t0))
                last = r
        finally:
            for task in inflight.values():
                task.cancel()
            await asyncio.gather(*inflight.values(), return_exceptions=True)

    # ------------------------------------------------------------------ stages
    def _schema(self, module: Any, name: str = "SCHEMA") -> dict[str, Any] | None:
        """The stage's JSON schema, when this run asks for structured answers (else the text path)."""
        return getattr(module, name, None) if self.schemas else None

    def _examples(self, r: int, slot: int, pool_limit: int | None = None) -> list[PoolEntry]:
        pool = self.pool if pool_limit is None else self.pool[:pool_limit]
        rng = random.Random(call_seed(self.config.seed, "examples", r, slot))
        return rng.sample(pool, min(self.k, len(pool)))

    async def _weaknesses(self, r: int, ledger: Ledger) -> tuple[list[str], int, str | None]:
        """(the round's distinct weaknesses, calls made, the prompt if plugins added feedback to it, else None).

        K = `lanes` sampled calls at once, call n seeded by n (K = 1: n is the attempt, as always);
        answers already in the summary or equal to an earlier one (normalized) are dropped and
        the missing ones re-asked, at most `WEAKNESS_ATTEMPTS` waves. Fewer than K distinct: the
        round runs with those. None at all: the last usable answer, as with one lane.
        The plain prompt is the preset's template over `summary_before`, already in the
        revision; storing it again would grow every record by the whole summary.
        """
        notes = [n for p in self.plugins if (n := p.weakness_feedback(r, self.summary))]
        prompt = weakness.build_prompt(self.preset, self.style, self.summary, "\n".join(notes) or None)
        stop = self.preset.stops(self.style, "weakness")
        seen = {normalize(line) for line in self.summary}
        found: list[str] = []
        candidate, calls = "", 0

        async def ask(n: int) -> Completion:
            return await self.client.complete(
                prompt,
                self.config.sampling.weakness,
                stage="weakness",
                seed=call_seed(self.config.seed, "weakness", r, n),
                stop=stop,
                ledger=ledger,
                schema=self._schema(weakness),
            )

        for _wave in range(WEAKNESS_ATTEMPTS):
            wanted = range(calls + 1, calls + 1 + self.config.lanes - len(found))
            calls += len(wanted)
            if len(wanted) == 1:  # one lane: a failing call raises as it is, no ExceptionGroup
                outs = [await ask(wanted[0])]
            else:
                with user_errors_first():
                    async with asyncio.TaskGroup() as tg:
                        tasks = [tg.create_task(ask(n)) for n in wanted]
                outs = [t.result() for t in tasks]
            for out in outs:
                parsed = (
                    weakness.parse_json(out.text, self.preset)
                    if out.structured
                    else weakness.parse(out.text, self.preset)
                )
                if parsed.ok and parsed.value:  # a rejected answer counts as no answer: try again
                    candidate = parsed.value
                    if normalize(candidate) not in seen and not weakness.same_category(candidate, found):
                        seen.add(normalize(candidate))
                        found.append(candidate)
            if len(found) == self.config.lanes:
                break
        if not candidate:
            raise ModelOutputError(
                f"round {r}: the model gave no usable weakness in {WEAKNESS_ATTEMPTS} attempts; check the endpoint's "
                "model and --prompt-style, then rerun to resume"
            )
        return found or [candidate], calls, prompt if notes else None

    async def _batch(
        self,
        r: int,
        stage: str,
        weakness_text: str | None,
        ledger: Ledger,
        pool_limit: int | None = None,
        slots: range | None = None,
    ) -> list[tuple[int, list[PoolEntry], Completion]]:
        sampling = self.config.sampling.generate if stage == "generate" else self.config.sampling.selfinstruct
        stop = self.preset.stops(self.style, stage)
        schema = self._schema(generate if stage == "generate" else selfinstruct)

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
                tasks = [tg.create_task(one(slot)) for slot in slots or range(self.config.batch_size)]
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
        """Run and commit round r (`run` overlaps the commit with the next round instead)."""
        return self._commit(*await self._advisor_prepare(r))

    async def _advisor_prepare(self, r: int) -> tuple[Revision, list[dict[str, Any]], list[dict[str, Any]]]:
        """Round r's calls, up to its revision, rows and rejects (not written); the summary and
        pool move on to round r's, so round r + 1 can start before this one is committed."""
        started, t0 = now(), time.monotonic()
        ledger = Ledger()
        timings = Timings()

        self.observer.stage("weakness")
        weak_list, attempts, weakness_prompt = await self._weaknesses(r, ledger)
        weak = weak_list[0]
        timings.weakness = time.monotonic() - t0

        self.observer.stage("generate")
        t1 = time.monotonic()
        batch = self.config.batch_size
        if len(weak_list) == 1:  # one lane: as in the paper's loop
            results = [await self._batch(r, "generate", weak, ledger)]
        else:
            with user_errors_first():
                async with asyncio.TaskGroup() as tg:
                    tasks = [
                        tg.create_task(self._batch(r, "generate", w, ledger, slots=range(j * batch, (j + 1) * batch)))
                        for j, w in enumerate(weak_list)
                    ]
            results = [t.result() for t in tasks]
        rows, rejects, firsts = [], [], []
        for j, (w, lane) in enumerate(zip(weak_list, results, strict=True)):
            lane_rows, lane_rejects = self._validate(r, "generate", lane, w)
            for row in lane_rows:
                row["lane"] = j
            rows += lane_rows
            rejects += lane_rejects
            firsts += [PoolEntry(id=lane_rows[0]["id"], prompt=lane_rows[0]["prompt"], category=w)] if lane_rows else []
        timings.generate = time.monotonic() - t1

        self.observer.stage("summarize")
        t2 = time.monotonic()
        new_examples = [row["prompt"] for row in rows] if self.config.summary_sees_examples else None
        prompt = summarize.build_prompt(self.preset, self.style, self.summary, weak_list, new_examples)
        mode = self.preset.prompt_set(self.style).summary_output
        sampling = self.config.sampling.summarize
        budget = await self.endpoint.budget(prompt, sampling.max_new_tokens)  # the rewrite must fit the server
        stop = self.preset.stops(self.style, "summarize")
        schema = "SCHEMA_APPEND" if mode == "append" else "SCHEMA"
        lines = budget.max_new_tokens
        if mode == "append" and len(weak_list) > 1:  # one line per weakness: no newline stop, a short budget
            stop, schema = [s for s in stop if s != "\n"] + ["\n\n"], "SCHEMA_APPEND_MANY"
            lines = min(lines, 16 * (len(weak_list) + 1))
        out = await self.client.complete(
            prompt,
            sampling.model_copy(update={"max_new_tokens": lines}),
            stage="summarize",
            seed=call_seed(self.config.seed, "summarize", r),
            stop=stop,
            ledger=ledger,
            schema=self._schema(summarize, schema),
        )
        update = self._summary_update(out, weak_list, mode, budget)
        timings.summarize = time.monotonic() - t2

        rev = self._revision(r, started, t0, ledger, timings, rows, rejects, weak, firsts)
        rev.weaknesses = weak_list
        rev.weakness_attempts = attempts
        rev.weakness_prompt = weakness_prompt
        rev.summary_sees_examples = self.config.summary_sees_examples
        rev.summary_after = update.summary
        rev.summary_source = update.source
        rev.summary_note = update.note
        rev.summary_added, rev.summary_merged = list(update.added), dict(update.merged)
        rev.summary_dropped = list(update.dropped)
        self.summary = update.summary
        self.pool.extend(firsts)
        self.pool_len[r] = len(self.pool)
        return rev, rows, rejects

    def _summary_update(self, out: Completion, weak: list[str], mode: str, budget: Budget) -> summarize.SummaryUpdate:
        """Parse the summary answer; one cut off by the token budget is a note, not lost lines
        (several weaknesses in append mode: the short budget is expected to end the answer)."""
        if out.finish_reason == "length" and not (mode == "append" and len(weak) > 1):
            limit = f"{budget.max_new_tokens}-token budget"
            if budget.prompt_tokens is not None:
                limit += f" ({budget.prompt_tokens} prompt tokens, {budget.counted})"
            return summarize.fallback(self.summary, weak, f"answer cut off at the {limit}")
        delimiter = self.preset.delimiter(self.style)
        if out.structured:
            return summarize.parse_json(out.text, self.summary, weak, mode)
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
            extra=round_prices(self.config.price_input, self.config.price_output),
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
