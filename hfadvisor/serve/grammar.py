"""Constrained decoding for the embedded backend: JSON schemas and regexes through xgrammar.

Why xgrammar: it is maintained, ships a CPU wheel, and builds a token bitmask per step in
microseconds, so a constrained row costs about what an unconstrained one does. Why our own
logits processor instead of `xgrammar.contrib.hf.LogitsProcessor`: a batch here mixes
constrained and free rows, and rows finish one by one (stop strings, per-row max_new_tokens);
the contrib processor would feed the padding of a finished row to its matcher and fail.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from hfadvisor.deps import require
from hfadvisor.errors import GenerationRequestError
from hfadvisor.serve.backend import GenerationRequest

if TYPE_CHECKING:
    import torch

CACHE_SIZE = 64  # compiled grammars kept; a run uses one schema per stage, so a handful


class GrammarCache:
    """Compile a request's schema or regex once per distinct value (LRU), for one tokenizer.

    The xgrammar tokenizer info is built lazily on the first constrained request: a run that
    never asks for structure does not pay for importing xgrammar or scanning the vocabulary.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> None:
        self.tokenizer, self.vocab_size, self.stop_token_ids = tokenizer, vocab_size, stop_token_ids
        self.compiles = 0  # how many grammars were compiled (not served from the cache): lets tests see the cache
        self._compiler: Any = None
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._compile_lock = threading.Lock()

    @staticmethod
    def key(request: GenerationRequest) -> str | None:
        """A canonical key for the request's grammar, or None when it has none."""
        if request.json_schema is not None:
            return "json:" + json.dumps(request.json_schema, sort_keys=True, separators=(",", ":"))
        if request.regex is not None:
            return "regex:" + request.regex
        return None

    def cached(self, request: GenerationRequest) -> Any | None:
        """The compiled grammar if already compiled (cheap: callable from the event loop)."""
        key = self.key(request)
        with self._lock:
            if key is None or key not in self._cache:
                return None
            self._cache.move_to_end(key)
            return self._cache[key]

    def compile(self, request: GenerationRequest) -> Any | None:
        """Compile (or fetch) the request's grammar; an invalid schema or regex is TGI's 422."""
        key = self.key(request)
        if key is None:
            return None
        with self._compile_lock:  # one compile at a time: concurrent requests for a new schema compile it once
            hit = self.cached(request)
            return hit if hit is not None else self._compile(key, request)

    def _compile(self, key: str, request: GenerationRequest) -> Any:
        compiler = self._get_compiler()
        try:
            if request.json_schema is not None:
                schema = request.json_schema or {"type": "object"}
                # Compact JSON: with free whitespace a small model can emit newlines until max_new_tokens.
                compiled = compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
            else:
                compiled = compiler.compile_regex(request.regex)
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError with its parser's message
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GenerationRequestError(f"Input validation error: grammar is not valid: {message}") from exc
        with self._lock:
            self.compiles += 1
            self._cache[key] = compiled
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return compiled

    def _get_compiler(self) -> Any:
        with self._lock:
            if self._compiler is None:
                require("embedded", "xgrammar")
                import xgrammar as xgr

                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=2)
            return self._compiler


class RowGrammars:
    """A transformers LogitsProcessor (duck-typed) masking each constrained row to its grammar.

    `grammars[i]` is row i's compiled grammar or None (left free). `finished(i)` tells whether
    row i is already done: its next tokens are padding and must not reach its matcher.
    """

    def __init__(self, grammars: list[Any | None], vocab_size: int, finished: Any) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matchers = [None if g is None else xgr.GrammarMatcher(g) for g in grammars]
        self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)
        self.vocab_size = vocab_size
        self.finished = finished
        self._started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        live = [i for i, m in enumerate(self.matchers) if m is not None and not self.finished(i)]
        if self._started:
            last = input_ids[:, -1].tolist()
            for i in live:
                matcher = self.matchers[i]
                if not matcher.is_terminated() and not matcher.accept_token(last[i]):
                    raise RuntimeError(f"row {i}: the grammar refused token {last[i]} it had allowed")
        self._started = True
        rows = [i for i in live if not self.matchers[i].is_terminated()]
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
        if rows:
            self._xgr.apply_token_bitmask_inplace(scores, self.bitmask, vocab_size=self.vocab_size, indices=rows)
        return scores
