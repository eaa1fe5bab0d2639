"""References and selections of the align stage that are not the measures themselves:
the closed-form floors (never the reference), the in-sample own-language AP (the winner's
curse shown beside the held-out one), and the units followed over checkpoints."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


def crosslingual_floor(units: int, k: int, n_langs: int, m: int) -> float:
    """Expected cross-lingual count if each language's top K were an independent uniform
    random K-subset, ``units * P(Binomial(n_langs, K/units) >= m)``: a floor only — units
    that rank high for any label break the independence."""
    p = k / units
    tail = sum(
        math.comb(n_langs, i) * p**i * (1 - p) ** (n_langs - i) for i in range(m, n_langs + 1)
    )
    return units * tail


def _floors(arr: dict[str, Any], units: int, k: int, m: int, real: np.ndarray) -> dict[str, float]:
    """Closed-form floors of the measures (see the module doc): never the reference."""
    from babelscope.analysis.stats import expected_random_ap

    present = np.isfinite(arr["ap_half0"][..., 0]) & real[:, None]
    p, n = arr["n_pos_half"], arr["n_half"]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(p >= 1, expected_random_ap(np.maximum(p, 1), np.maximum(n, 1)), np.nan)
    e_lang = e.mean(0)  # (L, C): scored on either half, averaged as the measure is
    n_l = present.shape[0]
    off = [e_lang[b, c] for c in range(present.shape[1]) for a in range(n_l) for b in range(n_l)
           if a != b and present[a, c] and present[b, c]]  # fmt: skip
    n_present = present.sum(0)
    return {
        "overlap": k / units,
        "jaccard": k / (2 * units - k),
        "transfer_ap": float(np.nanmean(off)) if off else float("nan"),
        "self_ap": float(np.nanmean(e_lang[present])) if present.any() else float("nan"),
        "crosslingual": float(np.mean([crosslingual_floor(units, k, int(x), m) for x in n_present[n_present >= m]]))
        if (n_present >= m).any() else float("nan"),
        "self_ap_insample": float(np.nanmean(e_lang[present])) if present.any() else float("nan"),
    }  # fmt: skip


def _insample_self(ap: np.ndarray, k: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """In-sample self AP per (language, concept): mean full-pool AP of its own top K."""
    from babelscope.analysis.alignment_measures import topk

    idx = topk(ap, k, lo, hi)
    vals = np.take_along_axis(np.nan_to_num(ap[..., lo:hi]), np.maximum(idx, 0), -1).mean(-1)
    present = np.isfinite(ap[..., lo:hi]).any(-1)
    return vals[present], np.broadcast_to(np.arange(ap.shape[1])[None, :], present.shape)[present]


def strongest_units(arr: dict[str, Any], k: int, n: int) -> list[tuple[str, int, int]]:
    """(concept, flat unit, n languages) of the ``n`` units in the most languages' whole-model
    top K **on half 0** (ties: higher mean half-0 AP): selected on half 0, shown on half 1."""
    from babelscope.analysis.alignment_measures import topk

    ap0 = arr["ap_half0"]
    idx = topk(ap0, k)
    cands = []
    for c, concept in enumerate(arr["concepts"]):
        members = idx[:, c][idx[:, c] >= 0]
        counts = np.bincount(members.ravel(), minlength=ap0.shape[-1])
        with warnings.catch_warnings():  # a concept without half-0 positives: all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_ap = np.nanmean(ap0[:, c], axis=0)
        for u in np.flatnonzero(counts > 0):
            cands.append((int(counts[u]), float(mean_ap[u]), concept, int(u)))
    cands.sort(key=lambda t: (-t[0], -t[1], t[2], t[3]))
    return [(c, u, cnt) for cnt, _, c, u in cands[:n]]
