"""Intervals: Wilson for shares, percentile bootstrap (optionally two-level) for means."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import norm


def wilson_interval(
    successes: int | np.ndarray, n: int | np.ndarray, level: float = 0.95
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Wilson score interval of a share ``successes / n`` (elementwise; NaN where n = 0).

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 % and near
    it: 5 of 100 gives about [2.2 %, 11.2 %].
    """
    k = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    z = float(norm.ppf(0.5 + level / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / m
        denom = 1 + z * z / m
        centre = (p + z * z / (2 * m)) / denom
        half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / denom
        lo, hi = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    lo = np.where(m > 0, lo, np.nan)
    hi = np.where(m > 0, hi, np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence | np.ndarray | None = None,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(values)``.

    With ``clusters`` (e.g. the concept of each (concept, language pair) value) it is a
    two-level bootstrap: clusters are drawn with replacement, then values within each
    drawn cluster, so the interval carries both the spread between concepts and between
    pairs. NaN values are dropped; fewer than two values give ``(nan, nan)``.
    """
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    if clusters is None:
        v = v[keep]
        idx = rng.integers(0, len(v), size=(n_boot, len(v)))
        reps = np.array([stat(v[i]) for i in idx]) if stat is not np.mean else v[idx].mean(axis=1)
    else:
        c = np.asarray(clusters)[keep]
        v = v[keep]
        _, inv = np.unique(c, return_inverse=True)
        groups = [v[inv == g] for g in range(inv.max() + 1)]
        if stat is np.mean:
            # Vectorised: a cluster drawn k times contributes k independent resamples of its
            # values, i.e. multinomial weights over its values with k * n_g draws in all.
            n_g = len(groups)
            picks = rng.multinomial(n_g, np.full(n_g, 1 / n_g), size=n_boot)  # (n_boot, G)
            num = np.zeros(n_boot)
            den = np.zeros(n_boot)
            for g, vals in enumerate(groups):
                w = rng.multinomial(picks[:, g] * len(vals), np.full(len(vals), 1 / len(vals)))
                num += w @ vals
                den += w.sum(1)
            reps = num / den
            lo, hi = np.quantile(reps, [alpha, 1 - alpha])
            return float(lo), float(hi)
        reps = np.empty(n_boot)
        for b in range(n_boot):
            picked = rng.integers(0, len(groups), size=len(groups))
            parts = [
                groups[g][rng.integers(0, len(groups[g]), size=len(groups[g]))] for g in picked
            ]
            reps[b] = stat(np.concatenate(parts))
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return float(lo), float(hi)
