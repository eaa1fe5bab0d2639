"""Null references: the expected AP of a random ranking and permutation nulls.

A reference line is only honest when it is computed the way the number beside it is
computed. For AP of a *random ranking* the expectation has a closed form (below); for
anything chosen as "the best of many units" (top-K experts, their overlap across
languages) the reference is the same computation on permuted labels, summarised by
:func:`null_summary` and :func:`permutation_pvalue`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def harmonic(n: int | np.ndarray) -> np.ndarray:
    """H_n = 1 + 1/2 + ... + 1/n (H_0 = 0), exact for integers up to ~1e7, elementwise."""
    n = np.asarray(n, dtype=np.int64)
    top = int(n.max()) if n.size else 0
    cum = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, top + 1))])
    return cum[n]


def expected_random_ap(n_pos: int | np.ndarray, n: int | np.ndarray) -> np.ndarray | float:
    """E[AP] of a uniformly random ranking (no ties) of ``n`` items, ``n_pos`` positive.

    ``((P - 1) / (N - 1) * (N - H_N) + H_N) / N`` (H_N the harmonic number): the positive
    at rank i contributes precision (1 + #positives above it) / i, and each other item
    is positive with probability (P - 1) / (N - 1). It is larger than the positive rate
    P / N, which only a constant score gets (every item tied). Elementwise over arrays.
    """
    p = np.asarray(n_pos, dtype=np.float64)
    nn = np.asarray(n, dtype=np.int64)
    if np.any(p < 1) or np.any(p > nn):
        raise ValueError("expected_random_ap needs 1 <= n_pos <= n")
    h = harmonic(nn)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(nn > 1, (p - 1) / np.maximum(nn - 1, 1), 0.0)
    out = (frac * (nn - h) + h) / nn
    return float(out) if out.ndim == 0 else out


def length_bins(lengths: Sequence[float] | np.ndarray, n_bins: int = 4) -> np.ndarray:
    """Quantile bins (0 .. n_bins - 1) of ``lengths``; equal lengths share a bin."""
    x = np.asarray(lengths, dtype=np.float64)
    if len(x) == 0 or n_bins <= 1:
        return np.zeros(len(x), dtype=np.int64)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, x, side="left").astype(np.int64)


def stratified_permutation(
    strata: Sequence | np.ndarray, rng: np.random.Generator, n_perm: int | None = None
) -> np.ndarray:
    """A permutation of ``range(n)`` that moves items only within their stratum
    (``n_perm`` of them as an ``(n_perm, n)`` array when given).

    ``labels[perm]`` permutes labels within each stratum (e.g. source x length bin), so
    the null keeps how positives are spread over those strata: a unit that detects the
    source or the length ranks the permuted positives as well as the real ones.
    """
    s = np.asarray(strata)
    n = len(s)
    reps = 1 if n_perm is None else n_perm
    out = np.tile(np.arange(n), (reps, 1))
    if n:
        _, inv = np.unique(s, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.flatnonzero(np.diff(inv[order])) + 1
        groups = [g for g in np.split(order, bounds) if len(g) > 1]
        for r in range(reps):
            for grp in groups:
                out[r, grp] = grp[rng.permutation(len(grp))]
    return out[0] if n_perm is None else out


def permutation_pvalue(
    observed: float, null: Sequence[float] | np.ndarray, *, alternative: str = "greater"
) -> float:
    """One-sided permutation p-value ``(1 + #{null >= observed}) / (R + 1)``.

    The +1 counts the observed arrangement as one of the permutations, so p is never 0
    and is valid (Phipson & Smyth 2010). ``alternative="less"`` counts ``null <= observed``.
    NaN when there is no null or the observation is NaN.
    """
    z = np.asarray(null, dtype=np.float64)
    z = z[np.isfinite(z)]
    if len(z) == 0 or not np.isfinite(observed):
        return float("nan")
    if alternative == "greater":
        hits = int((z >= observed - 1e-12).sum())
    elif alternative == "less":
        hits = int((z <= observed + 1e-12).sum())
    else:
        raise ValueError("alternative must be 'greater' or 'less'")
    return (1 + hits) / (len(z) + 1)


def null_summary(null: Sequence[float] | np.ndarray, observed: float | None = None) -> dict:
    """``null_mean``, ``null_p95`` (95th percentile), ``n_null`` and, given an observed
    value, its one-sided ``p_value``."""
    z = np.asarray(null, dtype=np.float64)
    z = z[np.isfinite(z)]
    out = {
        "null_mean": float(z.mean()) if len(z) else float("nan"),
        "null_p95": float(np.percentile(z, 95)) if len(z) else float("nan"),
        "n_null": int(len(z)),
    }
    if observed is not None:
        out["p_value"] = permutation_pvalue(observed, z)
    return out
