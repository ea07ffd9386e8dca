"""The embedded backend: a transformers causal LM on CPU with dynamic batching and grammars.

Why batching: the loop sends a dozen requests at once and, on CPU, one left-padded batch of 12
costs little more than a single request, so concurrent requests are gathered for a few
milliseconds and run as one `generate` call in a worker thread. Constrained rows (a JSON schema
or regex) join the same batch as free ones: each row has its own grammar matcher (`grammar.py`).
The model files themselves (fetch, convert, the tiny test model) live in `model.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfadvisor.deps import require
from hfadvisor.errors import EndpointError, GenerationRequestError
from hfadvisor.serve.backend import Generation, GenerationRequest
from hfadvisor.serve.grammar import GrammarCache, RowGrammars
from hfadvisor.serve.model import (  # re-exported: callers and tests reach the model files through here
    CHATML_TEMPLATE,
    GGUF_IN_WHEEL,
    MODEL_ID,
    WHEEL,
    default_model_dir,
    ensure_model,
    log,
    tiny_random_model,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHATML_TEMPLATE",
    "GGUF_IN_WHEEL",
    "MODEL_ID",
    "WHEEL",
    "EmbeddedBackend",
    "default_model_dir",
    "ensure_model",
    "tiny_random_backend",
]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _holdback(text: str, stops: list[str]) -> int:
    """How many trailing characters not to stream yet: a possible stop prefix, or a partial UTF-8 char."""
    hold = len(text) - len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


def _sampling_key(request: GenerationRequest) -> tuple[float, float] | None:
    """Rows of one batch must share sampling params; None means greedy."""
    if not request.temperature:
        return None
    return (request.temperature, request.top_p if request.top_p is not None else 1.0)


@dataclass(eq=False)
class _Row:
    """One request inside a batch; the worker thread pushes text pieces to its asyncio queue."""

    request: GenerationRequest
    prompt_ids: list[int]
    loop: asyncio.AbstractEventLoop
    grammar: Any = None  # the compiled xgrammar grammar of a constrained request
    queue: asyncio.Queue[str | Generation | BaseException] = field(default_factory=asyncio.Queue)
    text: str = ""
    sent: int = 0
    tokens: int = 0
    done: bool = False
    cancelled: bool = False

    def push(self, item: str | Generation | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class EmbeddedBackend:
    """A transformers causal LM on CPU implementing `Backend`, batching concurrent requests.

    Requests arriving within `batch_wait` seconds of each other with the same sampling params
    (greedy, or the same temperature and top_p) run as one left-padded `generate`; stop strings
    and max_new_tokens are per row, and a row that finishes stops costing anything once the
    whole batch is done. `seed` cannot be per row in a batch: the batch's RNG is seeded once
    from its first seeded request, so a seed is reproducible only when that request ran alone.
    Rows with different grammars (or none) share a batch unless `mix_grammars=False`: each
    constrained row is masked by its own matcher, so mixing costs only the mask of that row.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        max_input_tokens: int | None = None,
        max_total_tokens: int | None = None,
        max_batch_size: int = 16,
        batch_wait: float = 0.01,
        mix_grammars: bool = True,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        positions = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.max_total_tokens = max_total_tokens or min(positions, 8192)
        self.max_input_tokens = max_input_tokens or self.max_total_tokens // 2
        self.max_batch_size = max_batch_size
        self.batch_wait = batch_wait
        self.mix_grammars = mix_grammars
        eos = model.generation_config.eos_token_id
        eos_ids = {*([] if eos is None else [eos] if isinstance(eos, int) else eos)}
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else min(eos_ids, default=0)
        self.batch_sizes: list[int] = []  # one entry per `generate` call: lets tests see the batching
        self.constrained_rows: list[int] = []  # per `generate` call, how many rows had a grammar
        self.vocab_size = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
        self.grammars = GrammarCache(tokenizer, self.vocab_size, sorted(eos_ids))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfadvisor-generate")
        self._pending: list[_Row] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._batcher: asyncio.Task[None] | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, **kwargs: Any) -> EmbeddedBackend:
        """Load a local transformers folder (default: the embedded SmolLM2, fetched on first use)."""
        require("embedded", "torch")
        require("embedded", "transformers")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(path).expanduser() if path else ensure_model()
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise EndpointError(f"{folder} is not a transformers model folder or a PEFT adapter (no config.json)")
        if not (folder / "config.json").is_file():  # `hfadvisor train` output: transformers loads base + adapter
            require("train", "peft")
        torch.set_num_threads(_cpu_count())
        started = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        log(f"loaded {folder} in {time.monotonic() - started:.1f} s")
        kwargs.setdefault("model_id", MODEL_ID if path is None else str(path))
        return cls(model, tokenizer, **kwargs)

    # -- Backend protocol ---------------------------------------------------------------------

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template, published in /info so TGI-API clients can render prompts."""
        template = getattr(self.tokenizer, "chat_template", None)
        return template if isinstance(template, str) else None

    @property
    def special_tokens(self) -> dict[str, str | None]:
        return {"bos_token": self.tokenizer.bos_token, "eos_token": self.tokenizer.eos_token}

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        """Render with the model's own template; a model without one cannot serve chat (422)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise GenerationRequestError(
                f"Template error: {self.model_id} has no chat template; use text_generation instead"
            )
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(rendered)

    async def generate(self, request: GenerationRequest) -> Generation:
        final: Generation | None = None
        async for item in self.stream(request):
            if isinstance(item, Generation):
                final = item
        assert final is not None, "the batch worker always ends a row with a Generation"
        return final

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | Generation]:
        grammar = None
        if request.constrained:  # compile off the event loop (first use of a schema: ~0.1-1 s)
            grammar = self.grammars.cached(request) or await asyncio.to_thread(self.grammars.compile, request)
        row = self._submit(request, grammar)
        try:
            while True:
                item = await row.queue.get()
                if isinstance(item, BaseException):
                    raise RuntimeError(f"generation failed: {type(item).__name__}: {item}") from item
                yield item
                if isinstance(item, Generation):
                    return
        finally:
            if not row.done:
                row.cancelled = True  # the worker drops it at its next step

    def close(self) -> None:
        """Stop the worker thread (pending rows are abandoned)."""
        if self._batcher is not None:
            self._batcher.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- batching -----------------------------------------------------------------------------

    def _encode(self, request: GenerationRequest) -> list[int]:
        """Tokenize and validate with TGI's messages (they become 422 validation errors)."""
        if request.max_new_tokens < 1:
            raise GenerationRequestError("Input validation error: `max_new_tokens` must be strictly positive")
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and request.prompt.startswith(bos))  # chat templates already carry BOS
        ids: list[int] = self.tokenizer(request.prompt, add_special_tokens=add_special).input_ids
        if request.truncate:
            ids = ids[-request.truncate :]
        n = len(ids)
        if n == 0:
            raise GenerationRequestError("Input validation error: `inputs` cannot be empty")
        if n > self.max_input_tokens:
            raise GenerationRequestError(
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} tokens. Given: {n}"
            )
        if n + request.max_new_tokens > self.max_total_tokens:
            raise GenerationRequestError(
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                f"{self.max_total_tokens}. Given: {n} `inputs` tokens and {request.max_new_tokens} "
                "`max_new_tokens`"
            )
        return ids

    def _submit(self, request: GenerationRequest, grammar: Any = None) -> _Row:
        ids = self._encode(request)
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._batcher is None or self._batcher.done():
            self._loop, self._pending, self._wakeup = loop, [], asyncio.Event()
            self._batcher = loop.create_task(self._batch_loop(), name="hfadvisor-batcher")
        row = _Row(request, ids, loop, grammar)
        self._pending.append(row)
        assert self._wakeup is not None
        self._wakeup.set()
        return row

    async def _batch_loop(self) -> None:
        """Gather concurrent requests briefly, then run them one compatible batch at a time."""
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                await asyncio.sleep(self.batch_wait)
            batch = self._take_batch()
            if batch:
                await loop.run_in_executor(self._executor, self._run_batch, batch)

    def _batch_key(self, row: _Row) -> tuple[Any, ...]:
        """Rows sharing a key may run together: same sampling, and (unless mixing) same grammar."""
        key: tuple[Any, ...] = (_sampling_key(row.request),)
        return key if self.mix_grammars else (*key, GrammarCache.key(row.request))

    def _take_batch(self) -> list[_Row]:
        """The oldest request's sampling group, up to max_batch_size; the rest wait for the next batch."""
        live = [r for r in self._pending if not r.cancelled]
        if not live:
            self._pending = []
            return []
        key = self._batch_key(live[0])
        batch = [r for r in live if self._batch_key(r) == key][: self.max_batch_size]
        chosen = set(batch)
        self._pending = [r for r in live if r not in chosen]
        return batch

    def _run_batch(self, rows: list[_Row]) -> None:
        """Worker thread: one left-padded `generate`; `_RowStopper` streams and stops each row."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        width = max(len(r.prompt_ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            n = len(row.prompt_ids)
            input_ids[i, width - n :] = torch.tensor(row.prompt_ids, dtype=torch.long)
            attention_mask[i, width - n :] = 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(r.request.max_new_tokens for r in rows),
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids),
            "stopping_criteria": StoppingCriteriaList([_RowStopper(self, rows, width)]),
            "do_sample": False,
        }
        constrained = sum(r.grammar is not None for r in rows)
        if constrained:  # runs before temperature/top-p: sampling only ever sees allowed tokens
            grammars = RowGrammars([r.grammar for r in rows], self.vocab_size, lambda i: rows[i].done)
            kwargs["logits_processor"] = LogitsProcessorList([grammars])
        key = _sampling_key(rows[0].request)
        if key is not None:
            kwargs.update(do_sample=True, temperature=key[0], top_p=key[1], top_k=0)  # 0: no top-k, as TGI
            seed = next((r.request.seed for r in rows if r.request.seed is not None), None)
            if seed is not None:
                torch.manual_seed(seed)
        self.batch_sizes.append(len(rows))
        self.constrained_rows.append(constrained)
        try:
            with torch.inference_mode():
                self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        except Exception as exc:
            for row in rows:
                if not row.done:
                    row.done = True
                    row.push(exc)
            return
        for row in rows:
            if not row.done and not row.cancelled:  # cannot happen unless generate stops on its own
                self._finish(row, "length")

    def _step(self, row: _Row, generated: torch.Tensor, last_id: int) -> None:
        """Advance one row by its newest token: eos, stop string, length, or stream the safe text."""
        if row.cancelled:
            row.done = True
            return
        row.tokens += 1
        if last_id in self.eos_ids:
            self._finish(row, "eos_token")
            return
        text = self.tokenizer.decode(generated.tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        cut = _first_stop(text, row.request.stop)
        if cut is not None:
            row.text = text[:cut]
            self._finish(row, "stop_sequence")
            return
        row.text = text
        if row.tokens >= row.request.max_new_tokens:
            self._finish(row, "length")
            return
        safe = len(text) - _holdback(text, row.request.stop)
        if safe > row.sent:
            row.push(text[row.sent : safe])
            row.sent = safe

    def _finish(self, row: _Row, reason: str) -> None:
        row.done = True
        if len(row.text) > row.sent:
            row.push(row.text[row.sent :])
            row.sent = len(row.text)
        row.push(
            Generation(
                text=row.text,
                generated_tokens=row.tokens,
                prompt_tokens=len(row.prompt_ids),
                finish_reason=reason,  # type: ignore[arg-type]
            )
        )


class _RowStopper:
    """A transformers StoppingCriteria (duck-typed) that finishes rows one by one."""

    def __init__(self, backend: EmbeddedBackend, rows: list[_Row], width: int) -> None:
        self.backend, self.rows, self.width = backend, rows, width

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        last = input_ids[:, -1].tolist()
        for i, row in enumerate(self.rows):
            if not row.done:
                self.backend._step(row, input_ids[i, self.width :], last[i])
        return torch.tensor([r.done for r in self.rows], dtype=torch.bool, device=input_ids.device)


def tiny_random_backend(*, seed: int = 0, **kwargs: Any) -> EmbeddedBackend:
    """The tiny random-weight Llama of protocol tests as a backend: starts in ~1 s, writes gibberish."""
    model, tokenizer = tiny_random_model(seed)
    kwargs.setdefault("model_id", "hfadvisor/tiny-random-llama")
    kwargs.setdefault("max_input_tokens", 1024)
    return EmbeddedBackend(model, tokenizer, **kwargs)
