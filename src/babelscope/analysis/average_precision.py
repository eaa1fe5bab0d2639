"""Where Average Precision is computed: exact AP of every unit at once, and per-unit statistics.

AP of unit u for a binary label is ``sklearn.metrics.average_precision_score(labels,
scores[:, u])``: the step-wise sum over *distinct* score thresholds, so tied scores form
one threshold. With ``N_ge(s)`` the number of sentences scoring ``>= s`` and ``TP_ge(s)``
the positives among them, that sum equals the mean over positives ``j`` of the precision
at their own threshold::

    AP = 1/P * sum_j TP_ge(s_j) / N_ge(s_j)

so only the ranks of the positives matter. Two ways to get them, both sort-based:

* one concept (:func:`average_precision`): sort each unit's scores once, then a
  branch-free binary search (all units in lock step) finds ``N_ge`` of each positive;
* many concepts over one pool (:func:`score_units`): ``N_ge`` of *every* sentence is
  computed once per unit (one sort of packed ``(value, index)`` keys), after which each
  concept costs only a gather of its positives' ranks.

Ties among the positives themselves are handled on the ranks (equal ``N_ge`` means equal
score). Units are processed in chunks that fit in cache, optionally on several threads
(numpy's sort releases the GIL), so memory stays bounded by the chunk size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from babelscope.errors import BabelscopeError

# Elements (sentences x units) per chunk: ~2 MB of float32, kept in cache while worked on.
CHUNK_ELEMENTS = 1 << 19


@dataclass(frozen=True)
class UnitStatistics:
    """Per-unit activation statistics for one label: ``(n_units,)`` float64 arrays."""

    on_p50: np.ndarray  # median on positives
    on_p90: np.ndarray  # 90th percentile on positives
    off_mean: np.ndarray  # mean on negatives


@dataclass(frozen=True)
class ConceptScores:
    """AP and statistics of every unit for several labels: ``(n_labels, n_units)`` float64."""

    ap: np.ndarray
    on_p50: np.ndarray
    on_p90: np.ndarray
    off_mean: np.ndarray
    n_pos: np.ndarray  # (n_labels,) positives per label
    n_neg: np.ndarray  # (n_labels,) negatives per label


# -- input checks ---------------------------------------------------------------------


def _check_scores(scores: np.ndarray) -> np.ndarray:
    """A 2-D float array; float32 where that is lossless (the fast path), else float64."""
    x = np.asarray(scores)
    if x.ndim != 2:
        raise BabelscopeError(f"scores must be 2-D (sentences, units), got shape {x.shape}")
    if x.shape[0] == 0:
        raise BabelscopeError("scores have no sentences: AP needs at least one sentence")
    if x.dtype == np.float32:
        pass
    elif x.dtype in (np.float16, np.int8, np.uint8, np.int16, np.uint16, np.bool_):
        x = x.astype(np.float32)
    else:
        x64 = x.astype(np.float64, copy=False)
        x32 = x64.astype(np.float32)
        # float32 keys are twice as fast to sort; use them only when nothing is lost.
        x = x32 if np.array_equal(x32, x64) else x64
    # float32 sums exactly to a finite float64 unless a value is NaN/inf: no (n, u) mask.
    finite = np.isfinite(x.sum(dtype=np.float64)) if x.dtype == np.float32 else np.isfinite(x).all()
    if not finite:
        raise BabelscopeError(
            "scores contain NaN or infinite values: the checkpoint may be broken (see `babelscope checkpoints inspect`)"
        )
    return x


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise BabelscopeError(
            f"labels must have one row per sentence ({n}), got shape {np.shape(labels)}"
        )
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise BabelscopeError("labels must be binary (0/1 or bool)")
        y = y.astype(bool)
    return y


def default_threads() -> int:
    """Usable cores (at most 8): chunks of units are scored in parallel."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _chunks(n_sent: int, n_units: int, chunk_units: int | None) -> list[slice]:
    c = chunk_units or max(8, CHUNK_ELEMENTS // max(n_sent, 1))
    return [slice(a, min(a + c, n_units)) for a in range(0, n_units, c)]


def _map_chunks(fn: Callable[[slice], None], chunks: list[slice], threads: int | None) -> None:
    threads = default_threads() if threads is None else max(1, int(threads))
    if threads == 1 or len(chunks) == 1:
        for c in chunks:
            fn(c)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, chunks):
            pass


# -- the core: AP from the ranks of the positives ------------------------------------------


def _ap_from_ranks(g: np.ndarray) -> np.ndarray:
    """AP per row from ``g`` (units, P): ``N_ge`` of each positive (>= 1).

    Equal ``N_ge`` means equal score, so ties among positives are found on ``g``.
    ``TP_ge`` of a positive = number of positives with ``N_ge`` <= its own.
    """
    u, p = g.shape
    gs = np.sort(g, axis=1)  # ascending N_ge = descending score
    idx = np.arange(p)
    is_end = np.ones_like(gs, dtype=bool)
    is_end[:, :-1] = gs[:, :-1] != gs[:, 1:]
    # Index of the last member of each tie group, filled backwards.
    end = np.where(is_end, idx, p)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    return ((end + 1) / gs).mean(axis=1)


def _padded_rows(x: np.ndarray, sl: slice) -> np.ndarray:
    """Units ``sl`` of ``x`` as rows (u, m), m = n rounded up to a power of two, tail +inf.

    The +inf tail lets the binary search in :func:`_count_less` run without bounds checks.
    """
    n = x.shape[0]
    m = 1 << (n - 1).bit_length()
    rows = np.empty((sl.stop - sl.start, m), dtype=x.dtype)
    rows[:, n:] = np.inf
    rows[:, :n] = x[:, sl].T
    return rows


def _count_less(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """For sorted rows ``s`` (u, m), m a power of two, and queries ``q`` (u, P) that are
    entries of their row: the count of ``s[r] < q[r, j]`` (at most m - 1).

    A branch-free binary search (lower bound built from the largest power of two down),
    run for all rows in lock step.
    """
    u, m = s.shape
    flat = s.ravel()
    base = (np.arange(u, dtype=np.int64) * m - 1)[:, None]
    lo = np.zeros(q.shape, dtype=np.int64)
    step = m >> 1
    while step:
        cand = lo + step
        lo = np.where(flat[base + cand] < q, cand, lo)
        step >>= 1
    return lo


def _ordered_key32(x: np.ndarray) -> np.ndarray:
    """float32 -> int32 whose signed order is the float order (-0.0 and 0.0 equal)."""
    b = (x + np.float32(0.0)).view(np.int32)  # adding +0.0 turns -0.0 into 0.0
    return b ^ ((b >> 31) & np.int32(0x7FFFFFFF))


def _n_ge_all(x: np.ndarray) -> np.ndarray:
    """``N_ge`` of every entry of ``x`` (u, n), as int32: sentences scoring >= it in its row."""
    u, n = x.shape
    if x.dtype == np.float32:
        # One sort of (value key, index) packed in int64: order and positions together.
        keys = (_ordered_key32(x).astype(np.int64) << 32) | np.arange(n, dtype=np.int64)
        keys.sort(axis=1)
        order = (keys & 0xFFFFFFFF).astype(np.intp)
        sv = keys >> 32
    else:
        order = np.argsort(x, axis=1, kind="stable")
        sv = np.take_along_axis(x, order, axis=1)
    is_start = np.ones(sv.shape, dtype=bool)
    is_start[:, 1:] = sv[:, 1:] != sv[:, :-1]
    start = np.maximum.accumulate(np.where(is_start, np.arange(n), 0), axis=1)
    out = np.empty((u, n), dtype=np.int32)
    np.put_along_axis(out, order, (n - start).astype(np.int32), axis=1)
    return out


def _transpose_chunk(x: np.ndarray, sl: slice) -> np.ndarray:
    return np.ascontiguousarray(x[:, sl].T)


# -- public API ------------------------------------------------------------------------


def average_precision(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    chunk_units: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """AP of every unit: ``scores`` (n_sentences, n_units), ``labels`` (n_sentences,) bool.

    Returns ``(n_units,)`` float64, equal to ``sklearn.metrics.average_precision_score``
    column by column (ties included). NaN when there is no positive.
    """
    x = _check_scores(scores)
    y = _check_labels(labels, x.shape[0])
    if y.shape[1] != 1:
        raise BabelscopeError(
            "average_precision takes one label column: use score_units for several"
        )
    pos = np.flatnonzero(y[:, 0])
    n, n_units = x.shape
    out = np.full(n_units, np.nan)
    if len(pos) == 0 or n_units == 0:
        return out

    def work(sl: slice) -> None:
        rows = _padded_rows(x, sl)
        q = rows[:, pos]
        rows.sort(axis=1)
        out[sl] = _ap_from_ranks(n - _count_less(rows, q))

    _map_chunks(work, _chunks(n, n_units, chunk_units), threads)
    return out


def _stats(xt_pos: np.ndarray, pos_sum: np.ndarray, total: np.ndarray, n_neg: int):
    """on_p50, on_p90 over positives (units, P); off_mean from sums."""
    p50, p90 = np.percentile(xt_pos, [50, 90], axis=1)
    off = (total - pos_sum) / n_neg if n_neg else np.full(len(total), np.nan)
    return p50, p90, off


def unit_statistics(scores: np.ndarray, labels: np.ndarray) -> UnitStatistics:
    """``on_p50``/``on_p90`` (numpy's linear percentiles on positives) and ``off_mean``
    (mean on negatives) of every unit; NaN where there are no positives / negatives."""
    x = _check_scores(scores)
    y = _check_labels(labels, x.shape[0])[:, 0]
    n_units = x.shape[1]
    if not y.any():
        nan = np.full(n_units, np.nan)
        return UnitStatistics(nan, nan.copy(), x[~y].mean(axis=0, dtype=np.float64))
    xp = x[y].astype(np.float64)
    p50, p90 = np.percentile(xp, [50, 90], axis=0)
    off = x[~y].mean(axis=0, dtype=np.float64) if (~y).any() else np.full(n_units, np.nan)
    return UnitStatistics(p50, p90, off)


def score_units(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    chunk_units: int | None = None,
    threads: int | None = None,
) -> ConceptScores:
    """AP and statistics of every unit for every label column of ``labels`` (n, C).

    The ranking of each unit is computed once and shared by all labels, so C concepts
    over one sentence pool cost one sort per unit plus a small gather per concept.
    Labels without positives get NaN everywhere; without negatives, NaN ``off_mean``.
    """
    x = _check_scores(scores)
    y = _check_labels(labels, x.shape[0])
    n, n_units = x.shape
    n_lab = y.shape[1]
    pos_idx = [np.flatnonzero(y[:, c]) for c in range(n_lab)]
    n_pos = np.array([len(p) for p in pos_idx], dtype=np.int64)
    res = {k: np.full((n_lab, n_units), np.nan) for k in ("ap", "on_p50", "on_p90", "off_mean")}
    if n_units == 0:
        return ConceptScores(**res, n_pos=n_pos, n_neg=n - n_pos)

    def work(sl: slice) -> None:
        xt = _transpose_chunk(x, sl)
        n_ge = _n_ge_all(xt)
        total = xt.sum(axis=1, dtype=np.float64)
        for c, pos in enumerate(pos_idx):
            if len(pos) == 0:
                if n:
                    res["off_mean"][c, sl] = total / n
                continue
            xp = xt[:, pos].astype(np.float64)
            res["ap"][c, sl] = _ap_from_ranks(n_ge[:, pos])
            p50, p90, off = _stats(xp, xp.sum(axis=1), total, n - len(pos))
            res["on_p50"][c, sl], res["on_p90"][c, sl], res["off_mean"][c, sl] = p50, p90, off

    _map_chunks(work, _chunks(n, n_units, chunk_units), threads)
    return ConceptScores(**res, n_pos=n_pos, n_neg=n - n_pos)
