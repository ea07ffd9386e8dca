"""All metrics of a growing dataset in one object, fed round by round (the plugin and `compare` share it).

Cost of adding a round: O(new rows) for distinct-n, the diversity sums and the category
assignment of the new rows; O(candidates) for near-duplicates (prefix filtering, exact);
O(rows) per category the summary gained. Reading the values: one 384×384 eigendecomposition
(Vendi). Every value is exact, i.e. equal to computing it from scratch on all rows (up to
float rounding and ties between equally close categories).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from hfadvisor.metrics.text import NEAR_DUP_JACCARD, DistinctN, NearDuplicates


def effective_number(counts: Iterable[int]) -> float:
    """exp(entropy) of the rows-per-category shares: k for rows spread evenly over k categories, 1 for one.

    "Covered" saturates once every category has a stray row; this says how evenly rows spread.
    """
    values = [c for c in counts if c > 0]
    total = sum(values)
    if not total:
        return 0.0
    return math.exp(-sum(c / total * math.log(c / total) for c in values))


class MetricState:
    """Lexical metrics always; embedding metrics when an embedder is given (else they are absent)."""

    def __init__(self, embedder: Any | None = None, categories: Iterable[str] = ()) -> None:
        self.embedder = embedder
        self.distinct = {1: DistinctN(1), 2: DistinctN(2)}
        self.near = NearDuplicates(NEAR_DUP_JACCARD)
        self.diversity: Any = None
        self.coverage: Any = None
        if embedder is not None:
            from hfadvisor.metrics.coverage import Coverage
            from hfadvisor.metrics.diversity import Diversity

            self.diversity = Diversity(embedder.dim)
            self.coverage = Coverage(embedder.encode, embedder.dim)
            self.coverage.set_categories(categories)

    @property
    def rows(self) -> int:
        return self.near.rows

    def set_categories(self, lines: Iterable[str]) -> None:
        if self.coverage is not None:
            self.coverage.set_categories(lines)

    def add(self, texts: list[str]) -> None:
        for d in self.distinct.values():
            d.add(texts)
        self.near.add(texts)
        if self.embedder is not None and texts:
            vectors = self.embedder.encode(texts)
            self.diversity.add(vectors)
            self.coverage.add(vectors)

    def snapshot(self) -> dict[str, Any]:
        """The current values, JSON-ready (floats rounded to 4 decimals)."""
        out: dict[str, Any] = {
            "rows": self.rows,
            "distinct_1": round(self.distinct[1].value, 4),
            "distinct_2": round(self.distinct[2].value, 4),
            "near_duplicate_rate": round(self.near.value, 4),
        }
        if self.embedder is not None:
            per_cat = self.coverage.rows_per_category()
            out |= {
                "mean_cosine_distance": round(self.diversity.mean_cosine_distance, 4),
                "vendi": round(self.diversity.vendi, 3),
                "categories_total": len(per_cat),
                "categories_covered": sum(1 for c in per_cat.values() if c),
                "effective_categories": round(effective_number(per_cat.values()), 3),
                "rows_per_category": per_cat,
            }
        return out
