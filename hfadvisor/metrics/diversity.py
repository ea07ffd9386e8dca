"""Embedding diversity: mean pairwise cosine distance and the Vendi score, both exact and incremental.

For unit vectors x_1..x_n with sum s, the sum of cosines over ordered pairs i≠j is
|s|² − n, so the mean pairwise cosine distance needs only s and n. The Vendi score
(Friedman & Dieng, 2023) with the cosine kernel is exp(entropy of the eigenvalues of K/n),
K = XXᵀ; those non-zero eigenvalues are the eigenvalues of XᵀX/n, a d×d matrix (d = 384)
that grows by a rank-one update per row. So adding rows costs O(rows·d²) and reading the
value one d×d eigendecomposition, whatever the dataset size.
"""

from __future__ import annotations

import numpy as np


def vendi_from_gram(gram: np.ndarray, n: int) -> float:
    """Vendi score from XᵀX (any d×d) for n unit vectors: exp(−Σ λ log λ), λ = eig(XᵀX / n)."""
    if n == 0:
        return 0.0
    lam = np.linalg.eigvalsh(gram / n)
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


def vendi_score(vectors: np.ndarray) -> float:
    """Vendi score of unit vectors (rows): 1 for identical vectors, n for n orthogonal ones."""
    x = np.asarray(vectors, dtype=np.float64)
    return vendi_from_gram(x.T @ x, len(x))


def mean_cosine_distance(vectors: np.ndarray) -> float:
    """Mean of 1 − cos over all pairs of distinct rows (0 for fewer than two rows)."""
    x = np.asarray(vectors, dtype=np.float64)
    acc = Diversity(x.shape[1] if x.ndim == 2 else 0)
    acc.add(x)
    return acc.mean_cosine_distance


class Diversity:
    """Running sums behind both scores; vectors must be L2-normalised."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = np.zeros(dim)
        self.sq_norms = 0.0
        self.gram = np.zeros((dim, dim))

    def add(self, vectors: np.ndarray) -> None:
        x = np.asarray(vectors, dtype=np.float64)
        if not len(x):
            return
        self.n += len(x)
        self.sum += x.sum(axis=0)
        self.sq_norms += float(np.einsum("ij,ij->", x, x))
        self.gram += x.T @ x

    @property
    def mean_cosine_distance(self) -> float:
        if self.n < 2:
            return 0.0
        pair_cos = (float(self.sum @ self.sum) - self.sq_norms) / (self.n * (self.n - 1))
        return 1.0 - pair_cos

    @property
    def vendi(self) -> float:
        return vendi_from_gram(self.gram, self.n)
