"""Similarity of the same content across languages: linear CKA and the translation margin.

Both work on one layer's parallel sentence vectors ``x`` of shape
``(n_languages, n_items, d)`` (``x[a, i]`` and ``x[b, i]`` are translations).

- **Linear CKA** (Kornblith et al. 2019) between two languages' representations of the
  same items: ``||Xc' Yc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F)`` with column-centred ``Xc``,
  ``Yc``. It compares the *geometry* of the items (which items are close to which) and is
  blind to a constant language offset and to rotations. With fewer items than dimensions
  it is biased upwards, so the reference is a **null from shuffled pairing**: the same
  CKA with the rows of one language permuted, averaged over pairs. Interval: bootstrap
  over language pairs (pairs share languages, so it is narrower than one that resampled
  languages).
- **Translation margin**: per item, the cosine with its translation minus the mean cosine
  with the other items of the other language, averaged over ordered pairs; raw and after
  removing each language's mean. Null: the same with shuffled pairing (about 0);
  interval: bootstrap over items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from babelscope.analysis.representations.retrieval import (
    check_parallel,
    pair_cosines,
    random_pairings,
)
from babelscope.analysis.stats import bootstrap_interval, null_summary


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of two representations of the same items, ``(n, d1)`` and ``(n, d2)``.

    1 for representations equal up to rotation, isotropic scaling and a constant offset;
    NaN when one of them is constant.
    """
    ka, kb = _gram(np.asarray(a, np.float64)), _gram(np.asarray(b, np.float64))
    return _cka_from_grams(ka, kb)


def _gram(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0, keepdims=True)
    return xc @ xc.T


def _cka_from_grams(ka: np.ndarray, kb: np.ndarray) -> float:
    denom = np.linalg.norm(ka) * np.linalg.norm(kb)
    return float(np.sum(ka * kb) / denom) if denom > 0 else float("nan")


@dataclass
class SimilarityResult:
    """A similarity measure of one layer, averaged over language pairs, with its null."""

    value: float
    ci_low: float
    ci_high: float
    null: np.ndarray
    chance: float
    n_items: int
    n_pairs: int

    def row(self) -> dict[str, float]:
        """The numbers for a result table: value, chance, null summary, interval."""
        return {
            "value": self.value,
            "chance": self.chance,
            **null_summary(self.null, self.value),
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_items": self.n_items,
            "n_pairs": self.n_pairs,
        }


def cka(
    x: np.ndarray, *, n_permutations: int = 100, n_boot: int = 1000, seed: int = 0
) -> SimilarityResult:
    """Mean linear CKA over unordered language pairs, beside its shuffled-pairing null."""
    x = check_parallel(x)
    n_lang, n = x.shape[:2]
    grams = np.stack([_gram(x[a]) for a in range(n_lang)])
    norms = np.linalg.norm(grams, axis=(1, 2))
    ia, ib = np.triu_indices(n_lang, k=1)
    denom = norms[ia] * norms[ib]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_pair = np.einsum("pij,pij->p", grams[ia], grams[ib]) / denom
        rng = np.random.default_rng(seed)
        null = np.empty(n_permutations)
        flat = grams.reshape(n_lang, -1)
        langs = np.arange(n_lang)[:, None, None]
        base = np.broadcast_to(np.arange(n), (n_lang, n))
        for r in range(n_permutations):
            # Each language's items shuffled independently: pair (a, b) compares a as it is
            # with b under its own random pairing.
            p = rng.permuted(base, axis=1)
            shuffled = grams[langs, p[:, :, None], p[:, None, :]].reshape(n_lang, -1)
            null[r] = np.nanmean((flat @ shuffled.T)[ia, ib] / denom)
    lo, hi = bootstrap_interval(per_pair, n_boot=n_boot, seed=seed)
    return SimilarityResult(
        value=float(np.nanmean(per_pair)), ci_low=lo, ci_high=hi, null=null,
        chance=float(np.nanmean(null)), n_items=n, n_pairs=len(ia),
    )  # fmt: skip


def margin(
    x: np.ndarray,
    *,
    centred: bool = False,
    n_permutations: int = 200,
    n_boot: int = 1000,
    seed: int = 0,
    pairings: np.ndarray | None = None,
    cos: np.ndarray | None = None,
) -> SimilarityResult:
    """Mean cosine of translation pairs minus that of non-translation pairs (ordered pairs).

    ``pairings``: the null's shuffled pairings (:func:`random_pairings`), shareable;
    ``cos``: :func:`pair_cosines` of ``x`` (same ``centred``), when already computed.
    """
    if cos is None:
        cos = pair_cosines(x, centred)  # (pairs, n, n)
    n_pairs, n = cos.shape[:2]
    rowsum = cos.sum(axis=2)
    diag = np.diagonal(cos, axis1=1, axis2=2)
    own = diag - (rowsum - diag) / (n - 1)  # (pairs, n)
    if pairings is None:
        pairings = random_pairings(n_permutations, n_pairs, n, seed)
    where = (np.arange(n_pairs)[:, None] * n * n + np.arange(n) * n)[None] + pairings
    hit = np.take(cos.ravel(), where)  # cos[k, i, pairings[r, k, i]]
    null = (hit - (rowsum[None] - hit) / (n - 1)).mean(axis=(1, 2))
    lo, hi = bootstrap_interval(own.mean(axis=0), n_boot=n_boot, seed=seed)
    return SimilarityResult(
        value=float(own.mean()), ci_low=lo, ci_high=hi, null=null, chance=0.0,
        n_items=n, n_pairs=n_pairs,
    )  # fmt: skip
