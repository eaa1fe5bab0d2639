"""Matched pools: per (concept, language), negatives that look like the positives.

A concept's positives are not a random draw of a language's text: the positives of
*password* are almost all Django UI strings, those of *rights* UDHR articles. Against
random negatives, a unit that detects "a Django string" or "legal register" ranks the
positives first, becomes a top expert for the concept in every language (the sources are
parallel), and so "aligns". A matched pool removes that advantage:

* **strata** are source x length bin (character-length quantiles of the language's text);
* in every stratum the pool holds ``ratio`` negatives per positive, so positives and
  negatives have the same source and length distribution, and a source or length detector
  ranks them no better than chance;
* every language gets the **same number of positives** ``n`` (so the same pool size
  ``n * (1 + ratio)`` and positive rate ``1 / (1 + ratio)``): the smallest number that every
  kept language can match (a language that cannot match ``min_positives`` drops the concept);
* a stratum with too few negatives keeps fewer positives (``min(P_s, N_s // ratio)``), so a
  language's positives may lean towards the strata where matching is possible.

Negatives are a uniform random sample of the stratum's sentences without the concept:
every concept of a language takes its negatives in one shared random order of the
language's sentences (the first ones without the concept, stratum by stratum). Each
concept's negatives are still a uniform sample, with the natural share of other concepts'
positives, while concepts share negatives, so the extracted pool grows little. Positives
are sampled per (language, concept); everything is seeded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


@dataclass
class MatchSettings:
    """How matched pools are drawn (the ``[data]`` settings ``match_*``)."""

    enabled: bool = True
    ratio: int = 3  # negatives per positive in every stratum
    length_bins: int = 3  # character-length quantile bins within a language


def strata(sources: np.ndarray, lengths: np.ndarray, n_bins: int) -> np.ndarray:
    """Stratum id (int) of every sentence of one language: source x length-quantile bin."""
    lengths = np.asarray(lengths, dtype=np.float64)
    if len(lengths) and n_bins > 1:
        edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_bins + 1)[1:-1]))
        bins = np.searchsorted(edges, lengths, side="left")
    else:
        bins = np.zeros(len(lengths), dtype=np.int64)
    _, src = np.unique(np.asarray(sources, dtype=str), return_inverse=True)
    return (src * max(n_bins, 1) + bins).astype(np.int64)


def capacity(
    positive: np.ndarray, candidate_pos: np.ndarray, stratum: np.ndarray, ratio: int
) -> int:
    """How many positives can be matched: sum over strata of ``min(P_s, N_s // ratio)``.

    ``positive``: sentences that may serve as positives (bool); ``candidate_pos``: every
    sentence positive for the concept (a negative must not be one); ``stratum``: ids.
    """
    total = 0
    for s in np.unique(stratum[positive]):
        in_s = stratum == s
        total += min(int((positive & in_s).sum()), int((~candidate_pos & in_s).sum()) // ratio)
    return total


def _allocate(caps: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over strata in proportion to ``caps`` (largest remainder), never above a cap."""
    if n >= caps.sum():
        return caps.copy()
    share = caps * (n / caps.sum())
    out = np.floor(share).astype(np.int64)
    for j in np.argsort(-(share - out), kind="stable")[: n - int(out.sum())]:
        out[j] += 1
    return np.minimum(out, caps)


def draw_matched(
    positive: np.ndarray,
    candidate_pos: np.ndarray,
    stratum: np.ndarray,
    order: np.ndarray,
    n: int,
    ratio: int,
    seed: int,
    lang: str,
    concept: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(positives, negatives)`` index arrays of one matched pool with ``n`` positives.

    ``positive``: the sentences that may be drawn as positives; ``candidate_pos``: every
    positive of the concept (never a negative); ``order``: the language's shared random
    rank of every sentence (negatives are the first free ones in it). ``n`` must not
    exceed :func:`capacity`.
    """
    rng = np.random.default_rng([seed, zlib.crc32(lang.encode()), zlib.crc32(concept.encode())])
    ids = np.unique(stratum[positive])
    caps = np.array(
        [min(int((positive & (stratum == s)).sum()), int((~candidate_pos & (stratum == s)).sum()) // ratio)
         for s in ids], dtype=np.int64,
    )  # fmt: skip
    take = _allocate(caps, n)
    pos, neg = [], []
    for s, k in zip(ids, take, strict=True):
        if k == 0:
            continue
        p = np.flatnonzero(positive & (stratum == s))
        pos.append(rng.choice(p, size=k, replace=False))
        free = np.flatnonzero(~candidate_pos & (stratum == s))
        neg.append(free[np.argsort(order[free], kind="stable")][: k * ratio])
    cat = lambda xs: np.sort(np.concatenate(xs)) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
    return cat(pos), cat(neg)
