"""Where Average Precision is computed: exact AP of every unit at once, and per-unit statistics.

AP of unit u for a binary label is ``sklearn.metrics.average_precision_score(labels,
scores[:, u])``: the step-wise sum over *distinct* score thresholds, so tied scores form
one threshold. With ``N_ge(s)`` the number of sentences scoring ``>= s`` and ``TP_ge(s)``
the positives among them, that sum equals the mean over positives ``j`` of the precision
at their own threshold::

    AP = 1/P * sum_j TP_ge(s_j) / N_ge(s_j)

so only the ranks of the positives matter, and ``N_ge(s_j) = TP_ge(s_j) + NEG_ge(s_j)``.

The fast path (float32 scores, at most ``BLOCK // 2`` positives) never sorts a whole
unit. numpy's SIMD sort (x86-simd-sort) sorts rows of up to 512 32-bit keys in one
sorting network, ~10x faster per element than longer rows (which are partitioned
first). So each unit's sentences are cut into ``B`` blocks of ``<= BLOCK - P``, *every*
block also gets all ``P`` positives, and each block row is sorted once. The sort keys
are ``uint32``: twice an order-reversing integer key of the float32 score (ties stay
equal, ``-0.0 == 0.0``; exact as long as a chunk's scores span fewer than 2**31 float32
steps, which a power-of-two rescaling secures for magnitudes in [2**-60, 2**64)) plus
a label bit in the lowest bit: 1 for the positives' copies, 0 for the sentences (the
positives among them too), so in a tie the label-0 keys come first. In a sorted block
the positive of rank ``r`` (by descending score) sits after the ``r`` positives before
it and after the sentences of that block scoring ``>= s_r``; summed over the blocks
those sentences are all of them: ``N_ge(s_r)``. One ``flatnonzero`` of the label bits
gives it, no gather, no search; ties among positives are equal ``N_ge``.

Everything else (float64 scores that float32 cannot hold, many positives, extreme
ranges) takes the general path: sort each unit's scores once, then a branch-free
binary search (all units in lock step) finds ``N_ge`` of each positive.

:func:`score_units` computes the keys of a chunk once and reuses them for every label;
from :data:`SHARED_RANKING_LABELS` labels on it instead ranks each unit fully once
(``N_ge`` of every sentence) and gathers the positives' ranks per label.
Units are processed in chunks that fit in cache, optionally on several threads (numpy
releases the GIL in its loops and sorts), so memory stays bounded by the chunk size.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from babelscope.errors import BabelscopeError

# Elements (sentences x units) per chunk: ~1 MB of 32-bit keys, kept in L2 while worked on.
CHUNK_ELEMENTS = 1 << 18
# Longest row numpy's SIMD sort handles in one sorting network (32-bit keys); the
# fast path needs P <= BLOCK // 2 positives (each block repeats them).
BLOCK = 512
# score_units: from this many labels with positives on, one full ranking per unit shared
# by all labels (one long sort) beats short sorts per label (measured: equal near 9).
SHARED_RANKING_LABELS = 8
_PAD = np.uint32(0xFFFFFFFE)  # sorts after every key (< 0xFFFFFFFE); label bit 0
# float32 bit patterns: magnitude of 2**-60 (smallest non-zero the rescaled keys allow),
# and the largest span of keys that leaves a free low bit in uint32.
_TINY_BITS = (127 - 60) << 23
_MAX_SPAN = 0x7FFFFFFE


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


_NOT_FINITE = (
    "scores contain NaN or infinite values: the checkpoint may be broken"
    " (see `babelscope checkpoints inspect`)"
)


def _check_scores(scores: np.ndarray, *, per_chunk: bool = False) -> np.ndarray:
    """A 2-D float array; float32 where that is lossless (the fast path), else float64.

    ``per_chunk``: float32 scores are left to the caller to check for NaN/inf chunk by
    chunk (where it reads them anyway), which saves a pass over the whole input.
    """
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
    if per_chunk and x.dtype == np.float32:
        return x
    # float32 sums exactly to a finite float64 unless a value is NaN/inf: no (n, u) mask.
    finite = np.isfinite(x.sum(dtype=np.float64)) if x.dtype == np.float32 else np.isfinite(x).all()
    if not finite:
        raise BabelscopeError(_NOT_FINITE)
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


def _ap_from_ranks(g: np.ndarray, *, ascending: bool = False) -> np.ndarray:
    """AP per row from ``g`` (units, P): ``N_ge`` of each positive (>= 1).

    Equal ``N_ge`` means equal score, so ties among positives are found on ``g``: a tie
    group of ``m`` positives ending at rank ``r`` (0-based, by descending score) adds
    ``m * (r + 1) / N_ge`` to ``P * AP``. ``ascending``: the rows of ``g`` are sorted.
    """
    u, p = g.shape
    gs = g if ascending else np.sort(g, axis=1)  # ascending N_ge = descending score
    flat = gs.ravel()
    is_end = np.empty(u * p, dtype=bool)
    np.not_equal(flat[1:], flat[:-1], out=is_end[:-1])
    is_end[p - 1 :: p] = True  # every row ends a group
    end = np.flatnonzero(is_end)
    # Group sizes: the previous end is the previous row's last entry for a row's first group.
    size = np.diff(end, prepend=-1)
    row = end // p
    contrib = size * (end - row * p + 1) / flat[end]
    return np.bincount(row, weights=contrib, minlength=u) / p


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


# -- the fast path: short sorted blocks with a label bit ---------------------------------


class _Workspace(threading.local):
    """Scratch arrays of one call, one set per thread, reused from chunk to chunk.

    Fresh multi-MB arrays per chunk would each cost page faults (glibc hands large
    blocks back to the kernel), about as much as the arithmetic on them.
    """

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self.__dict__.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(size, dtype=dtype)
            self.__dict__[name] = buf
        return buf[:size].reshape(shape)


def _float_key(v: np.floating) -> int:
    """:func:`_ordered_key32` of one float32, as a Python int."""
    b = int(np.float32(v).view(np.int32))
    return b ^ 0x7FFFFFFF if b < 0 else b


def _desc_keys(xc: np.ndarray, out: np.ndarray, ws: _Workspace) -> bool:
    """``out`` (n, W) uint32 <- ``2 * (hi - key)`` of the float32 scores ``xc`` (any strides).

    Ascending keys are descending scores; equal scores give equal keys (``-0.0 == 0.0``);
    the lowest bit is 0 (free for the label) and every key is below :data:`_PAD`. False
    when the chunk's scores span too many float32 steps even after rescaling. Raises on
    NaN/inf (the caller skipped that check, see :func:`_check_scores`).
    """
    f = out.view(np.float32)
    np.copyto(f, xc)
    f += np.float32(0.0)  # -0.0 + 0.0 is +0.0
    f_hi, f_lo = f.max(), f.min()  # NaN propagates
    if not (np.isfinite(f_hi) and np.isfinite(f_lo)):
        raise BabelscopeError(_NOT_FINITE)
    hi, lo = _float_key(f_hi), _float_key(f_lo)
    if hi - lo > _MAX_SPAN:
        # Tiny magnitudes use up most of the key range. Scaling by 2**-66 is exact for
        # |x| >= 2**-60 (the results stay normal) and brings |x| < 2**64 within 2**30 keys
        # of zero; a non-zero |x| < 2**-60 would lose bits, so then: the general path.
        m = out.view(np.int32) & np.int32(0x7FFFFFFF)
        m -= 1  # 0 -> 0xFFFFFFFF as uint32
        if int(m.view(np.uint32).min()) < _TINY_BITS - 1:
            return False
        f *= np.float32(2.0**-66)
        hi, lo = _float_key(f.max()), _float_key(f.min())
        if hi - lo > _MAX_SPAN:
            return False
    b = out.view(np.int32)
    # 2 * key (mod 2**32): key = b ^ (b >> 31 & 0x7FFFFFFF), and doubling drops bit 31,
    # so b ^ (b >> 31) doubles to the same.
    b ^= np.right_shift(b, 31, out=ws.get("sign", b.shape, np.int32))
    b <<= 1
    np.subtract(np.uint32((2 * hi) & 0xFFFFFFFF), out, out=out)  # 2 * (hi - key) < 2**32 - 2
    return True


def _block_layout(n: int, p: int) -> tuple[int, int]:
    """Blocks per unit ``B`` and sentence rows per block ``Rn`` (``B * Rn >= n``, balanced)."""
    b = -(-n // (BLOCK - p))
    return b, -(-n // b)


def _chunk_keys(xc: np.ndarray, ws: _Workspace) -> np.ndarray | None:
    """Sort keys of a chunk of scores ``xc`` (n, W) float32, one row per unit: (W, n)
    uint32 (see :func:`_desc_keys`), or None when they do not fit."""
    n, w = xc.shape
    k = ws.get("keys_nw", (n, w), np.uint32)
    if not _desc_keys(xc, k, ws):
        return None
    kt = ws.get("keys", (w, n), np.uint32)
    np.copyto(kt, k.T)
    ws.keys_rows = k  # the same keys (n, W), for :func:`_ap_blocks`
    return kt


def _ap_blocks(kt: np.ndarray, pos: np.ndarray, ws: _Workspace) -> np.ndarray:
    """AP per unit from the keys ``kt`` (W, n) of :func:`_chunk_keys` (called last with
    this ``ws``) and the positive rows ``pos`` (sorted, ``1 <= P <= BLOCK // 2``)."""
    w, n = kt.shape
    p = len(pos)
    nb, rn = _block_layout(n, p)
    rw = p + rn
    # Block row = the P positives with label bit 1, then Rn sentences with label bit 0:
    # all sentences, the positives included, so a positive's own label-0 copy is there.
    blocks = ws.get("blocks", (w, nb, rw), np.uint32)
    kpos = ws.keys_rows[pos]  # (P, W): rows are cheaper to gather than columns
    kpos |= np.uint32(1)
    blocks[:, :, :p] = kpos.T[:, None, :]
    full = n // rn
    blocks[:, :full, p:] = kt[:, : full * rn].reshape(w, full, rn)
    if full < nb:
        tail = n - full * rn
        blocks[:, full, p : p + tail] = kt[:, full * rn :]
        blocks[:, full, p + tail :] = _PAD
    flat = blocks.reshape(w * nb, rw)
    flat.sort(axis=1)
    # Flat positions of the positives (label bit 1), P per block row, by descending score.
    lab = np.left_shift(flat, np.uint32(31), out=ws.get("label", flat.shape, np.uint32))
    is_pos = np.less(lab.view(np.int32), 0, out=ws.get("is_pos", flat.shape, np.bool_))
    hit = np.flatnonzero(is_pos).reshape(w, nb, p)
    # In its block row the positive of rank r sits after the r positives before it and
    # after the label-0 sentences scoring >= it (a tie puts label 0 first). Summed over the
    # blocks, those sentences are every sentence scoring >= it, positives included: N_ge.
    n_ge = hit.sum(axis=1)
    n_ge -= (rw * nb * nb) * np.arange(w)[:, None] + (rw * nb * (nb - 1) // 2 + nb * np.arange(p))
    return _ap_from_ranks(n_ge, ascending=True)


def _ap_general(x: np.ndarray, sl: slice, pos: np.ndarray) -> np.ndarray:
    """AP of units ``sl``: full sort of each unit, binary search for the positives."""
    rows = _padded_rows(x, sl)
    if x.dtype == np.float32 and not np.isfinite(rows[:, : x.shape[0]].sum(dtype=np.float64)):
        raise BabelscopeError(_NOT_FINITE)
    q = rows[:, pos]
    rows.sort(axis=1)
    return _ap_from_ranks(x.shape[0] - _count_less(rows, q))


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
    x = _check_scores(scores, per_chunk=True)
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

    fast = x.dtype == np.float32 and len(pos) <= BLOCK // 2
    ws = _Workspace()

    def work(sl: slice) -> None:
        if fast:
            kt = _chunk_keys(x[:, sl], ws)
            if kt is not None:
                out[sl] = _ap_blocks(kt, pos, ws)
                return
        out[sl] = _ap_general(x, sl, pos)

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

    From :data:`SHARED_RANKING_LABELS` labels on, the full ranking of each unit is computed
    once and shared by all labels (one sort per unit plus a small gather per concept);
    with fewer, each label takes the fast path on sort keys computed once per chunk.
    Labels without positives get NaN everywhere; without negatives, NaN ``off_mean``.
    """
    x = _check_scores(scores, per_chunk=True)
    y = _check_labels(labels, x.shape[0])
    n, n_units = x.shape
    n_lab = y.shape[1]
    pos_idx = [np.flatnonzero(y[:, c]) for c in range(n_lab)]
    n_pos = np.array([len(p) for p in pos_idx], dtype=np.int64)
    res = {k: np.full((n_lab, n_units), np.nan) for k in ("ap", "on_p50", "on_p90", "off_mean")}
    if n_units == 0:
        return ConceptScores(**res, n_pos=n_pos, n_neg=n - n_pos)

    shared = int((n_pos > 0).sum()) >= SHARED_RANKING_LABELS
    fast = [x.dtype == np.float32 and not shared and len(p) <= BLOCK // 2 for p in pos_idx]
    ws = _Workspace()

    def work(sl: slice) -> None:
        xc = ws.get("scores", (n, sl.stop - sl.start), x.dtype)
        np.copyto(xc, x[:, sl])
        total = xc.sum(axis=0, dtype=np.float64)
        if x.dtype == np.float32 and not np.isfinite(total).all():  # no float64 overflow
            raise BabelscopeError(_NOT_FINITE)
        kt = _chunk_keys(xc, ws) if any(fast) else None
        n_ge = None  # the general path's shared ranking, computed if a label needs it
        for c, pos in enumerate(pos_idx):
            if len(pos) == 0:
                if n:
                    res["off_mean"][c, sl] = total / n
                continue
            if fast[c] and kt is not None:
                res["ap"][c, sl] = _ap_blocks(kt, pos, ws)
            else:
                if n_ge is None:
                    n_ge = _n_ge_all(np.ascontiguousarray(xc.T))
                res["ap"][c, sl] = _ap_from_ranks(n_ge[:, pos])
            xp = np.ascontiguousarray(xc[pos].T, dtype=np.float64)
            p50, p90, off = _stats(xp, xp.sum(axis=1), total, n - len(pos))
            res["on_p50"][c, sl], res["on_p90"][c, sl], res["off_mean"][c, sl] = p50, p90, off

    _map_chunks(work, _chunks(n, n_units, chunk_units), threads)
    return ConceptScores(**res, n_pos=n_pos, n_neg=n - n_pos)
