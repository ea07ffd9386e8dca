"""Category coverage: every row is assigned to the summary category its embedding is closest to.

The run's summary lists the categories the dataset is meant to cover; a category is
*covered* when at least one row is closest to it (cosine of MiniLM embeddings of the row's
prompt and the category line). Assignments stay exact as the summary grows: a new category
only needs its similarity to the existing rows (O(rows)), and a row moves to it when it is
strictly closer. Only when a category disappears from the summary (a rewrite) is every row
re-assigned (O(rows × categories)).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np

from hfadvisor.metrics.text import words

_BULLET = re.compile(r"^(?:[-*•]+|\d+[.)])\s*")


def clean_categories(lines: Iterable[str]) -> list[str]:
    """Summary lines as categories: stripped, blank and repeated (case/punctuation-folded) lines dropped."""
    out: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for line in lines:
        text = _BULLET.sub("", " ".join(str(line).split()))
        key = tuple(words(text))
        if text and key and key not in seen:
            seen.add(key)
            out.append(text)
    return out


class Coverage:
    """Running category assignment of unit row vectors; `encode` embeds category lines."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], dim: int) -> None:
        self.encode = encode
        self.dim = dim
        self.categories: list[str] = []
        self.cat_vecs = np.zeros((0, dim), dtype=np.float32)
        self._rows = np.zeros((256, dim), dtype=np.float32)
        self.n = 0
        self.best = np.zeros(0, dtype=np.int64)
        self.best_sim = np.zeros(0, dtype=np.float32)
        self.full_recomputes = 0

    @property
    def rows(self) -> np.ndarray:
        return self._rows[: self.n]

    def set_categories(self, lines: Iterable[str]) -> None:
        wanted = clean_categories(lines)
        if set(self.categories) <= set(wanted):
            new = [c for c in wanted if c not in set(self.categories)]
            if new:
                self._append_categories(new)
            return
        self.full_recomputes += 1
        self.categories, self.cat_vecs = [], np.zeros((0, self.dim), dtype=np.float32)
        self.best = np.full(self.n, -1, dtype=np.int64)
        self.best_sim = np.full(self.n, -np.inf, dtype=np.float32)
        self._append_categories(wanted)

    def _append_categories(self, new: list[str]) -> None:
        if not new:
            return
        vecs = self.encode(new).astype(np.float32)
        first = len(self.categories)
        self.categories.extend(new)
        self.cat_vecs = np.vstack([self.cat_vecs, vecs])
        if not self.n:
            return
        sims = self.rows @ vecs.T  # rows × new
        if first == 0:
            self.best = sims.argmax(axis=1).astype(np.int64)
            self.best_sim = sims.max(axis=1)
            return
        top, top_sim = sims.argmax(axis=1) + first, sims.max(axis=1)
        moved = top_sim > self.best_sim
        self.best[moved], self.best_sim[moved] = top[moved], top_sim[moved]

    def add(self, vectors: np.ndarray) -> None:
        x = np.asarray(vectors, dtype=np.float32)
        if not len(x):
            return
        while self.n + len(x) > len(self._rows):
            self._rows = np.vstack([self._rows, np.zeros_like(self._rows)])
        self._rows[self.n : self.n + len(x)] = x
        self.n += len(x)
        if self.categories:
            sims = x @ self.cat_vecs.T
            best, best_sim = sims.argmax(axis=1), sims.max(axis=1)
        else:
            best, best_sim = np.full(len(x), -1), np.full(len(x), -np.inf, dtype=np.float32)
        self.best = np.concatenate([self.best, best.astype(np.int64)])
        self.best_sim = np.concatenate([self.best_sim, best_sim.astype(np.float32)])

    def assignments(self) -> list[str | None]:
        return [self.categories[i] if i >= 0 else None for i in self.best.tolist()]

    def rows_per_category(self) -> dict[str, int]:
        """Every category of the summary, in summary order, with its row count (0 included)."""
        if not self.categories:
            return {}
        counts = np.bincount(self.best[self.best >= 0], minlength=len(self.categories))
        return dict(zip(self.categories, (int(c) for c in counts), strict=True))

    @property
    def covered(self) -> int:
        return sum(1 for c in self.rows_per_category().values() if c)
