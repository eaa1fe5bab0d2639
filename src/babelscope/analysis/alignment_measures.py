"""The alignment measures, cross-fitted, for one checkpoint and one scope of units.

One function computes them for the observed labels (from the experts shards) and for
every permuted labelling of the null (:mod:`babelscope.analysis.alignment_null`), so the
null is computed exactly the way the number is.

Inputs are the AP of every unit on the two halves of every pool
(:mod:`babelscope.analysis.halves`): ``ap0``/``ap1`` of shape ``(L, C, U)`` (languages x
concepts x units of the scope; NaN where a concept is not scored in a language).
E_h(c, l) is the top-K of ``ap_h[l, c]`` (ties: lower unit index). For concept c and
languages a, b (every item needs c scored in both):

``overlap``      (|E0(c,a) ∩ E1(c,b)| + |E1(c,a) ∩ E0(c,b)|) / 2K, a < b: sets chosen on
                 disjoint halves (no translation of a selection sentence on both sides).
``jaccard``      the same with |∩| / |∪|.
``transfer_ap``  mean AP on half 1 of (c, b) of E0(c, a), and half 0 of E1(c, a), averaged; a != b.
``self_ap``      the same with b = a: held-out AP of a language's own experts.
``crosslingual`` units in E_h(c, l) for at least m languages, averaged over h; per concept.

The **different-concept reference** of overlap, Jaccard, transfer and self AP pairs
E(c, a) with E(c', b) for every other concept c' scored in b (averaged); of the
cross-lingual count, it counts units shared by the sets of *different* concepts, concept
(c + i) mod C in the i-th language.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

PAIR_MEASURES = ("overlap", "jaccard", "transfer_ap")
MEASURES = ("overlap", "jaccard", "transfer_ap", "self_ap", "crosslingual")
# overlap and transfer AP over the (concept, pair) items whose concept words share tokens
# in the two languages, and over those that share none (analysis/lexical.py)
SPLIT_MEASURES = (
    "overlap_shared",
    "overlap_disjoint",
    "transfer_ap_shared",
    "transfer_ap_disjoint",
)


def measure_names(split: bool) -> tuple[str, ...]:
    """The measures computed: with a lexical ``split``, the split measures too."""
    return (*MEASURES, *SPLIT_MEASURES) if split else MEASURES


def _topk_kernel_py(values, lo, hi, k, out):  # pragma: no cover - compiled
    # Per row: indices (relative to lo) of the k largest values in [lo, hi); ties keep the
    # lower index (strict >), NaN never enters.
    n_rows = values.shape[0]
    for r in numba.prange(n_rows):
        best_v = np.full(k, -np.inf)
        best_i = np.full(k, -1, np.int64)
        filled = 0
        for u in range(lo, hi):
            v = values[r, u]
            if np.isnan(v):
                continue
            if filled < k:
                j = filled
                filled += 1
            elif v > best_v[k - 1]:
                j = k - 1
            else:
                continue
            while j > 0 and v > best_v[j - 1]:
                best_v[j] = best_v[j - 1]
                best_i[j] = best_i[j - 1]
                j -= 1
            best_v[j] = v
            best_i[j] = u - lo
        for j in range(k):
            out[r, j] = best_i[j]


# Two builds: threads pay off on large inputs; on small ones (and on a busy machine) the
# start of a parallel region costs more than the work.
_topk_kernel = numba.njit(parallel=True, cache=True, nogil=True)(_topk_kernel_py)
_topk_kernel_serial = numba.njit(cache=True, nogil=True)(_topk_kernel_py)
PARALLEL_FROM = 1 << 20  # elements of work


def topk(values: np.ndarray, k: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Indices (relative to ``lo``) of the top ``k`` of ``values[..., lo:hi]``, ties by lower
    index; rows with fewer than ``k`` finite values are padded with -1."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    shape = v.shape[:-1]
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty((flat.shape[0], k), dtype=np.int64)
    kernel = _topk_kernel if flat.shape[0] * v.shape[-1] >= PARALLEL_FROM else _topk_kernel_serial
    kernel(flat, int(lo), int(v.shape[-1] if hi is None else hi), int(k), out)
    return out.reshape(*shape, k)


@dataclass
class ScopeResult:
    """Means of every measure (and their different-concept references) for one scope; with
    ``items``, the per-item values and their concepts (for bootstrap intervals), and the
    language x language matrices (mean over concepts)."""

    value: dict[str, float]
    diffconcept: dict[str, float]
    pairs: dict[str, np.ndarray]  # measure -> (L, L), NaN where no concept is shared
    items: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    cells: dict[str, np.ndarray] = field(default_factory=dict)  # (items, 3): a, c, b of each item


def _gather(arr_lcu: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``arr[b, c, idx[a, c, j]]`` as ``(a, c, j, b)`` for ``arr`` (L, C, U), ``idx`` (L, C, K)."""
    n_l, n_c = arr_lcu.shape[:2]
    g = arr_lcu[
        np.arange(n_l)[None, None, None, :],
        np.arange(n_c)[None, :, None, None],
        np.maximum(idx, 0)[..., None],
    ]
    return np.where((idx >= 0)[..., None], g, 0)


def _members(idx: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(L, C, U) uint8 membership of the top-K sets ``idx`` (-1 entries are no member)."""
    m = np.zeros(shape, dtype=np.uint8)
    np.put_along_axis(m, np.maximum(idx, 0), (idx >= 0).astype(np.uint8), -1)
    return m


def _counts(idx: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(C, U): in how many languages' top-K sets each unit is, per concept."""
    n_c, n_u = shape[1], shape[2]
    flat = (np.arange(n_c)[None, :, None] * n_u + idx)[idx >= 0]
    return np.bincount(flat, minlength=n_c * n_u).reshape(n_c, n_u)


def _mean(x: np.ndarray, mask: np.ndarray) -> float:
    return float(x[mask].mean()) if mask.any() else float("nan")


def scope_measures(
    ap0: np.ndarray,
    ap1: np.ndarray,
    k: int,
    m: int,
    *,
    lo: int = 0,
    hi: int | None = None,
    items: bool = False,
    diffconcept: bool = True,
    real: np.ndarray | None = None,
    split: np.ndarray | None = None,
) -> ScopeResult:
    """Cross-fitted alignment measures of units ``[lo, hi)`` (see the module doc).

    ``real`` (L,) marks the real languages: the averages, items and cross-lingual counts
    use those only, so a control language (a cipher of a real one, which must align with
    it) does not lift them; the language x language ``pairs`` cover every language.
    ``split`` (L, C, L) marks the (language, concept, language) items whose concept words
    share tokens (1), share none (0) or are unknown (-1, in neither): it adds the
    :data:`SPLIT_MEASURES`.
    """
    hi = ap0.shape[-1] if hi is None else hi
    a0 = ap0[..., lo:hi]
    a1 = ap1[..., lo:hi]
    n_l, n_c, _ = a0.shape
    # AP is NaN for every unit or none (a concept without positives in a half)
    present = np.isfinite(a0[..., 0]) & np.isfinite(a1[..., 0])  # (L, C)
    idx0, idx1 = topk(ap0, k, lo, hi), topk(ap1, k, lo, hi)
    idx0[~present], idx1[~present] = -1, -1
    m0, m1 = _members(idx0, a0.shape), _members(idx1, a1.shape)

    i01 = _gather(m1, idx0).sum(2, dtype=np.float64)  # (a, c, b): |E0(c,a) ∩ E1(c,b)|
    i10 = _gather(m0, idx1).sum(2, dtype=np.float64)  # |E1(c,a) ∩ E0(c,b)|
    # absent concepts are NaN rows: zero what was gathered from them (masked below anyway)
    t01 = np.nan_to_num(_gather(a1, idx0)).sum(2, dtype=np.float64) / k  # mean AP1 on b of E0(c, a)
    t10 = np.nan_to_num(_gather(a0, idx1)).sum(2, dtype=np.float64) / k
    both = present[:, :, None] & present.T[None, :, :]  # (a, c, b)
    overlap = (i01 + i10) / (2 * k)
    jaccard = (i01 / (2 * k - i01) + i10 / (2 * k - i10)) / 2
    transfer = (t01 + t10) / 2
    eye = np.eye(n_l, dtype=bool)[:, None, :]
    upper = np.triu(np.ones((n_l, n_l), dtype=bool), 1)[:, None, :]
    off = both & ~eye
    rl = np.ones(n_l, dtype=bool) if real is None else np.asarray(real, dtype=bool)
    real_pair = (rl[:, None] & rl[None, :])[:, None, :]
    masks = {"overlap": both & upper & real_pair, "jaccard": both & upper & real_pair,
             "transfer_ap": off & real_pair, "self_ap": both & eye & real_pair}  # fmt: skip
    arrays = {"overlap": overlap, "jaccard": jaccard, "transfer_ap": transfer, "self_ap": transfer}
    if split is not None:  # 1 shared, 0 disjoint, -1 unknown (in neither)
        sp = np.asarray(split).astype(np.int8)
        for base in ("overlap", "transfer_ap"):
            masks[f"{base}_shared"] = masks[base] & (sp == 1)
            masks[f"{base}_disjoint"] = masks[base] & (sp == 0)
            arrays[f"{base}_shared"] = arrays[f"{base}_disjoint"] = arrays[base]
    value = {name: _mean(arrays[name], masks[name]) for name in masks}

    # cross-lingual: per concept scored in >= m languages, units in >= m languages' sets
    n_present = present[rl].sum(0)
    cl_ok = n_present >= m
    shape_r = (int(rl.sum()), *a0.shape[1:])
    cl = ((_counts(idx0[rl], shape_r) >= m).sum(-1) + (_counts(idx1[rl], shape_r) >= m).sum(-1)) / 2
    value["crosslingual"] = float(cl[cl_ok].mean()) if cl_ok.any() else float("nan")

    pairs = {}
    for name in PAIR_MEASURES:
        num = np.where(both, arrays[name], 0).sum(1)
        den = both.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            pairs[name] = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    dc: dict[str, float] = {}
    if diffconcept:
        z0 = np.where(present[..., None], a0, np.float32(0))
        z1 = np.where(present[..., None], a1, np.float32(0))
        r3 = np.ix_(rl, np.arange(n_c), rl)  # (a, c, b) restricted to real languages
        dc = _diffconcept(m0[rl], m1[rl], z0[rl], z1[rl], idx0[rl], idx1[rl], i01[r3], i10[r3],
                          t01[r3], t10[r3], present[rl], {n: v[r3] for n, v in masks.items()}, k, m)  # fmt: skip
    res = ScopeResult(value=value, diffconcept=dc, pairs=pairs)
    if items:
        cidx = np.broadcast_to(np.arange(n_c)[None, :, None], both.shape)
        for name, mask in masks.items():
            res.items[name] = (arrays[name][mask], cidx[mask])
            res.cells[name] = np.argwhere(mask)
        res.items["crosslingual"] = (cl[cl_ok].astype(np.float64), np.flatnonzero(cl_ok))
    return res


def _diffconcept(m0, m1, z0, z1, idx0, idx1, i01, i10, t01, t10, present, masks, k, m) -> dict:
    """Different-concept references: E(c, a) against every other concept's set / AP in b."""
    n_l, n_c, _ = m0.shape
    pm = present[:, :, None].astype(np.float32)
    # sums over the concepts scored in b, as (L, 1, U) so _gather can read them per b
    s0 = (m0 * pm).sum(1, keepdims=True, dtype=np.float64)
    s1 = (m1 * pm).sum(1, keepdims=True, dtype=np.float64)
    a0, a1 = (z0 * pm).sum(1, keepdims=True), (z1 * pm).sum(1, keepdims=True)

    def others(total: np.ndarray, idx: np.ndarray, same: np.ndarray) -> np.ndarray:
        g = _gather(np.broadcast_to(total, (n_l, n_c, total.shape[-1])), idx).sum(2)
        n_other = (present.sum(1) - 1).astype(np.float64)[None, None, :]  # per b
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_other > 0, (g - same) / n_other, np.nan)

    ov = (others(s1, idx0, i01) + others(s0, idx1, i10)) / (2 * k)
    jc = ov / (2 - ov)  # Jaccard at the mean intersection with the other concepts' sets
    tr = (others(a1, idx0, t01 * k) + others(a0, idx1, t10 * k)) / (2 * k)
    out = {
        "overlap": _mean(ov, masks["overlap"] & np.isfinite(ov)),
        "jaccard": _mean(jc, masks["jaccard"] & np.isfinite(jc)),
        "transfer_ap": _mean(tr, masks["transfer_ap"] & np.isfinite(tr)),
        "self_ap": _mean(tr, masks["self_ap"] & np.isfinite(tr)),
    }
    # cross-lingual count over shifted concepts: language i uses concept (c + i) mod C
    shift = (np.arange(n_c)[None, :] + np.arange(n_l)[:, None]) % n_c  # (L, C)
    rows = np.arange(n_l)[:, None]
    ok = present[rows, shift]
    cnt = [(mh[rows, shift] * ok[:, :, None]).sum(0, dtype=np.int64) for mh in (m0, m1)]
    cl = ((cnt[0] >= m).sum(-1) + (cnt[1] >= m).sum(-1)) / 2
    valid = ok.sum(0) >= m
    out["crosslingual"] = float(cl[valid].mean()) if valid.any() else float("nan")
    return out
