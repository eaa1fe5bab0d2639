"""AP of every unit for many label sets over the same sentences: one ranking, many labels.

Held-out experts (AP on each half of a pool) and permutation nulls (AP under R permuted
labellings) ask for the AP of every unit for thousands of label vectors over the *same*
scores. Each unit's scores are ranked once (``N_ge``: the sentences scoring >= each
sentence, so tied scores share one value); the AP of any positive set then needs only the
positives' ``N_ge`` (see :mod:`babelscope.analysis.average_precision`)::

    AP = 1/P * sum over positives j of TP_ge(j) / N_ge(j),   TP_ge(j) = #{positives i: N_ge(i) <= N_ge(j)}

which is exactly ``sklearn.metrics.average_precision_score`` with ties. The kernel is
compiled with numba: per label set, the positives' rows of ``N_ge`` (contiguous over
units) are compared pairwise (P is small), vectorised over units; sets run in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from babelscope.analysis.average_precision import _check_scores, _n_ge_all


def _ap_kernel_py(n_ge, inv, pos_flat, pos_start, out):  # pragma: no cover - compiled
    # n_ge, inv: (sentences, units). Per set, the positives' rows are contiguous over
    # units, so every inner loop runs over units and is vectorised (SIMD).
    n_units = n_ge.shape[1]
    n_sets = pos_start.shape[0] - 1
    for s in numba.prange(n_sets):
        a = pos_start[s]
        p = pos_start[s + 1] - a
        if p == 0:
            for u in range(n_units):
                out[s, u] = np.nan
            continue
        acc = np.zeros(n_units, np.float32)
        cnt = np.empty(n_units, np.int32)
        for j in range(p):
            gj = n_ge[pos_flat[a + j]]
            for u in range(n_units):
                cnt[u] = 0
            for i in range(p):  # TP_ge(j): positives ranked at or above j (ties count)
                gi = n_ge[pos_flat[a + i]]
                for u in range(n_units):
                    cnt[u] += gi[u] <= gj[u]
            ij = inv[pos_flat[a + j]]
            for u in range(n_units):
                acc[u] += cnt[u] * ij[u]
        for u in range(n_units):
            out[s, u] = acc[u] / p


# Two builds: threads pay off on large inputs; on small ones (and on a busy machine) the
# start of a parallel region costs more than the work.
_ap_kernel = numba.njit(parallel=True, cache=True, nogil=True)(_ap_kernel_py)
_ap_kernel_serial = numba.njit(cache=True, nogil=True)(_ap_kernel_py)
PARALLEL_FROM = 1 << 20  # elements of work


def ranks(scores: np.ndarray) -> np.ndarray:
    """``N_ge`` of every (sentence, unit): a ``(sentences, units)`` int32 array."""
    x = _check_scores(scores)
    return np.ascontiguousarray(_n_ge_all(np.ascontiguousarray(x.T)).T)


def ap_of_sets(
    n_ge: np.ndarray, positives: Sequence[np.ndarray] | np.ndarray, inv: np.ndarray | None = None
) -> np.ndarray:
    """AP of every unit for each positive set: ``(n_sets, units)`` float32.

    ``n_ge`` from :func:`ranks`; ``positives`` is a list of index arrays into the
    sentences, or a boolean ``(n_sets, sentences)`` matrix. A set without positives
    gives NaN. ``inv`` (``1 / n_ge`` as float32) may be passed when the same ranks serve
    many calls. Sums run in float32 (8 lanes per vector): AP agrees with scikit-learn to
    about 1e-6.
    """
    if isinstance(positives, np.ndarray) and positives.dtype == np.bool_:
        sets = [np.flatnonzero(row) for row in positives]
    else:
        sets = [np.asarray(p, dtype=np.int64) for p in positives]
    n_sent = n_ge.shape[0]
    for p in sets:
        if len(p) and (p.min() < 0 or p.max() >= n_sent):
            raise ValueError("ap_of_sets: a positive index is out of range")
    start = np.zeros(len(sets) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(p) for p in sets])
    flat = np.concatenate(sets).astype(np.int64) if sets else np.zeros(0, dtype=np.int64)
    out = np.empty((len(sets), n_ge.shape[1]), dtype=np.float32)
    if len(sets):
        g = np.ascontiguousarray(n_ge, dtype=np.int32)
        inv = inverse_ranks(g) if inv is None else inv
        kernel = _ap_kernel if len(sets) * g.shape[1] * 16 >= PARALLEL_FROM else _ap_kernel_serial
        kernel(g, inv, flat, start, out)
    return out


def inverse_ranks(n_ge: np.ndarray) -> np.ndarray:
    """``1 / N_ge`` as float32, the kernel's second input."""
    return (1.0 / np.asarray(n_ge, dtype=np.float64)).astype(np.float32)


def ap_of_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP of every unit for every column of a boolean ``labels`` (sentences, C): ``(C, units)``."""
    y = np.asarray(labels, dtype=bool)
    return ap_of_sets(ranks(scores), y.T)
