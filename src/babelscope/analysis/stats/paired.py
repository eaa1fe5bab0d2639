"""Paired tests between conditions that share their seeds (steering: the same seed under
two conditions starts from the same random stream)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest


def mcnemar_exact(a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray) -> dict:
    """Exact McNemar test of two binary outcomes paired by seed (two-sided).

    Only discordant seeds inform it: ``n_ab`` (a yes, b no) against ``n_ba``; the p-value
    is the exact binomial test of ``n_ab`` in ``n_ab + n_ba`` at 1/2 (1.0 when none differ).
    """
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError("mcnemar_exact: a and b must be paired (same length)")
    n_ab, n_ba = int((x & ~y).sum()), int((~x & y).sum())
    p = 1.0 if n_ab + n_ba == 0 else float(binomtest(n_ab, n_ab + n_ba, 0.5).pvalue)
    return {"n_ab": n_ab, "n_ba": n_ba, "diff": (n_ab - n_ba) / max(len(x), 1), "p_value": p}


def paired_permutation_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_perm: int = 10000,
    seed: int = 0,
) -> dict:
    """Two-sided sign-flip permutation test of the mean paired difference ``a - b``.

    Under the null each pair's difference is as likely positive as negative; the p-value
    counts random sign flips whose |mean| reaches the observed one (+1 for the observed).
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"diff": float("nan"), "p_value": float("nan"), "n": 0}
    obs = abs(d.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, len(d)))
    null = np.abs((signs * d).mean(axis=1))
    p = (1 + int((null >= obs - 1e-12).sum())) / (n_perm + 1)
    return {"diff": float(d.mean()), "p_value": p, "n": int(len(d))}
