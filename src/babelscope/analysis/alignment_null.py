"""Permutation nulls of the alignment measures, computed where the activations are.

For each language the concept labels of its pool are permuted R times **within strata of
half x source x length bin** (:func:`babelscope.analysis.stats.stratified_permutation`), so a
unit that detects the source or the length ranks the permuted positives as well as the
real ones: the null keeps those confounds; and every concept keeps its positives per half. Under each permutation the whole measure is
recomputed exactly as for the real labels: AP of every unit on each half
(:mod:`babelscope.analysis.ap_sets`), top-K per scope, then
:func:`babelscope.analysis.alignment_measures.scope_measures`. The permutations depend only
on the data and the seed, so every checkpoint is tested against the same R relabellings.

The null needs every unit's activations on every pool, so the experts stage computes it
for each checkpoint right after scoring (``ap/step-<N>/null.npz``); the align stage reads it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.alignment_measures import PAIR_MEASURES, measure_names, scope_measures
from babelscope.analysis.ap_sets import ap_of_sets
from babelscope.analysis.stats import length_bins, stratified_permutation
from babelscope.errors import BabelscopeError

NULL_FILE = "null.npz"
R_CHUNK = 10  # permutations whose AP arrays are held at once (memory ~ R_CHUNK x L x C x U)


@dataclass
class NullPlan:
    """What the null needs that does not depend on the checkpoint."""

    langs: list[str]
    concepts: list[str]  # concepts scored in >= 2 languages, sorted (as the align stage)
    cols: list[np.ndarray]  # per language: index in ``concepts`` of each compared column
    pool_cols: list[np.ndarray]  # per language: those columns' index in the pool's labels
    # per language, half, compared column: (R, P) positions (into the concept's members of
    # that half) of the positives under each permutation
    positives: list[list[list[np.ndarray]]]
    m: int
    settings: dict[str, Any]
    split: np.ndarray | None = None  # (L, C, L) bool: the concept's words share tokens in a and b

    @property
    def n_perm(self) -> int:
        for per_lang in self.positives:
            for per_half in per_lang:
                for pos in per_half:
                    return int(pos.shape[0])
        return 0

    @property
    def real(self) -> np.ndarray:
        """(L,) bool: real languages (a control language is reported apart)."""
        return real_languages(self.langs)


def real_languages(langs: list[str]) -> np.ndarray:
    """Which of ``langs`` are real (not a cipher control such as ``eng~x``)."""
    from babelscope.languages import is_control

    return np.array([not is_control(lang) for lang in langs], dtype=bool)


def strata(sources: list[str], texts: list[str], n_bins: int) -> np.ndarray:
    """Stratum of every sentence of a pool: its source x its length bin (characters,
    quantiles within the pool)."""
    bins = length_bins([len(t) for t in texts], n_bins)
    return np.array([f"{s}|{b}" for s, b in zip(sources, bins, strict=True)])


def make_plan(
    pools: list[Any],
    halves: list[np.ndarray],
    m: int,
    *,
    permutations: int,
    seed: int,
    n_bins: int,
    settings: dict[str, Any],
    split: np.ndarray | None = None,
) -> NullPlan:
    """The null's plan from the experts pools (``lang, concepts, labels, members, sources,
    texts``): every concept's labels permuted among its members of each half, within
    source x length strata."""
    seen: dict[str, int] = {}
    for p in pools:
        for c in p.concepts:
            seen[c] = seen.get(c, 0) + 1
    concepts = sorted(c for c, n in seen.items() if n >= 2)  # as the align stage compares them
    cols, pool_cols, positives = [], [], []
    for p, half in zip(pools, halves, strict=True):
        keep = np.array([j for j, c in enumerate(p.concepts) if c in concepts], dtype=np.int64)
        pool_cols.append(keep)
        cols.append(np.array([concepts.index(p.concepts[j]) for j in keep], dtype=np.int64))
        rng = np.random.default_rng([seed, zlib.crc32(p.lang.encode())])
        st = strata(p.sources, p.texts, n_bins)
        y = np.asarray(p.labels, dtype=bool)
        per_half = []
        for h in (0, 1):
            per_col = []
            for j in keep:
                idx = np.flatnonzero(p.members[:, j] & (np.asarray(half) == h))
                yj = y[idx, j]
                perm = stratified_permutation(st[idx], rng, permutations)
                # every row holds the same number of positives: one nonzero over all rows
                per_col.append(
                    np.nonzero(yj[perm])[1].reshape(len(perm), int(yj.sum())).astype(np.int32)
                )
            per_half.append(per_col)
        positives.append(per_half)
    return NullPlan(langs=[p.lang for p in pools], concepts=concepts, cols=cols,
                    pool_cols=pool_cols, positives=positives, m=m, settings=settings, split=split)  # fmt: skip


def _stack(plan: NullPlan, per_lang: list[np.ndarray], n_units: int) -> np.ndarray:
    """Per-language ``(..., C_l, U)`` AP arrays -> ``(..., L, C, U)`` with NaN where absent."""
    lead = per_lang[0].shape[:-2]
    out = np.full((*lead, len(plan.langs), len(plan.concepts), n_units), np.nan, dtype=np.float32)
    for i, a in enumerate(per_lang):
        out[..., i, plan.cols[i], :] = a
    return out


def measures_over_scopes(
    ap0: np.ndarray, ap1: np.ndarray, scopes: list[tuple[str, int, int, int]], m: int, **kw: Any
) -> dict[str, Any]:
    """:func:`scope_measures` for every scope ``(name, lo, hi, k)``."""
    return {name: scope_measures(ap0, ap1, k, m, lo=lo, hi=hi, **kw) for name, lo, hi, k in scopes}


def _null_ap(plan: NullPlan, hr: Any, i: int, h: int, rs: range, n_units: int) -> np.ndarray:
    """(len(rs), compared columns, U) AP of language ``i``'s half ``h`` under permutations ``rs``."""
    keep = plan.pool_cols[i]
    out = np.full((len(rs), len(keep), n_units), np.nan, dtype=np.float32)
    for t, table in enumerate(hr.tables[h]):
        cj = [q for q, j in enumerate(keep) if hr.which[h][j] == t]
        if not cj:
            continue
        sets = [plan.positives[i][h][q][r] for r in rs for q in cj]
        ap = ap_of_sets(table, sets, hr.inv[h][t])
        out[:, cj] = ap.reshape(len(rs), len(cj), n_units)
    return out


def null_step(
    plan: NullPlan, ranks: list[Any], scopes: list[tuple[str, int, int, int]]
) -> dict[str, np.ndarray]:
    """Null values of every measure for one checkpoint.

    ``ranks[i]`` is language i's :class:`babelscope.analysis.member_scores.HalfRanks`.
    Returns ``sums`` and ``counts`` (R, scopes, measures, C): per concept, the sum and
    number of the items each measure averages (so the align stage can leave concepts
    out), and ``pairs`` (R, scopes, pair measures, L, L).
    """
    from babelscope.progress import track

    n_units = next(t.shape[1] for hr in ranks for tabs in hr.tables for t in tabs)
    n_r, n_c = plan.n_perm, len(plan.concepts)
    names = measure_names(plan.split is not None)
    sums = np.full((n_r, len(scopes), len(names), n_c), np.nan)
    counts = np.zeros((n_r, len(scopes), len(names), n_c), dtype=np.int32)
    pairs = np.full(
        (n_r, len(scopes), len(PAIR_MEASURES), len(plan.langs), len(plan.langs)), np.nan
    )
    chunks = [range(s, min(s + R_CHUNK, n_r)) for s in range(0, n_r, R_CHUNK)]
    for rs in track(chunks, f"null: {n_r} permutations", transient=True):
        per_half = [
            _stack(plan, [_null_ap(plan, hr, i, h, rs, n_units) for i, hr in enumerate(ranks)], n_units)
            for h in (0, 1)
        ]  # fmt: skip
        for j, r in enumerate(rs):
            res = measures_over_scopes(per_half[0][j], per_half[1][j], scopes, plan.m,
                                       diffconcept=False, real=plan.real, items=True,
                                       split=plan.split)  # fmt: skip
            for si, (name, *_rest) in enumerate(scopes):
                sums[r, si], counts[r, si] = concept_sums(res[name].items, names, n_c)
                pairs[r, si] = [res[name].pairs[pm] for pm in PAIR_MEASURES]
    return {"sums": sums, "counts": counts, "pairs": pairs}


def concept_sums(
    items: dict[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...], n_c: int
) -> tuple[np.ndarray, np.ndarray]:
    """(measures, C) sum and count of every measure's items per concept."""
    s = np.zeros((len(names), n_c))
    c = np.zeros((len(names), n_c), dtype=np.int32)
    for mi, name in enumerate(names):
        vals, conc = items[name]
        s[mi] = np.bincount(np.asarray(conc, dtype=np.int64), weights=vals, minlength=n_c)
        c[mi] = np.bincount(np.asarray(conc, dtype=np.int64), minlength=n_c)
    return s, c


def null_values(null: dict[str, Any], keep: np.ndarray | None = None) -> np.ndarray:
    """(R, scopes, measures) null values over the concepts ``keep`` (bool (C,), default all)."""
    s, c = null["sums"], null["counts"]
    if keep is not None:
        s, c = s[..., keep], c[..., keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c.sum(-1) > 0, s.sum(-1) / np.maximum(c.sum(-1), 1), np.nan)


def save_null(
    path: Path,
    null: dict[str, np.ndarray],
    plan: NullPlan,
    scopes: list[tuple[str, int, int, int]],
    key: str,
) -> Path:
    """Write a checkpoint's null atomically, with what it was computed for."""
    from babelscope.io import atomic_path

    meta = dict(
        langs=np.array(plan.langs, dtype=str), concepts=np.array(plan.concepts, dtype=str),
        measures=np.array(measure_names(plan.split is not None), dtype=str),
        pair_measures=np.array(PAIR_MEASURES, dtype=str),
        scopes=np.array([s[0] for s in scopes], dtype=str), ks=np.array([s[3] for s in scopes]),
        m=np.array(plan.m), key=np.array(key),
    )  # fmt: skip
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **null, **meta)
    return path


def load_null(path: Path) -> dict[str, Any] | None:
    """A checkpoint's null, or None when it was not computed (``permutations = 0``)."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    for k in ("langs", "concepts", "measures", "pair_measures", "scopes"):
        d[k] = [str(x) for x in d[k]]
    d["ks"] = [int(x) for x in d["ks"]]
    d["m"], d["key"] = int(d["m"]), str(d["key"])
    return d


def align_pools(pools: list[Any], align: Any) -> list[int]:
    """Indices of the pools the alignment (and so its null) compares."""
    if not align.languages:
        return list(range(len(pools)))
    have = [p.lang for p in pools]
    missing = [lang for lang in align.languages if lang not in have]
    if missing:
        raise BabelscopeError(
            f"align.languages names {', '.join(missing)}, which have no expert scores: "
            f"scored languages are {', '.join(have)}"
        )
    return [have.index(lang) for lang in align.languages]


def write_null(
    out_dir: Path, step: int, plan: Any, ranks: list, key: str, align: Any, variant: str = "matched"
) -> None:
    """Compute and write the null of checkpoint ``step`` (``variant``'s folder)."""
    from babelscope.analysis.alignment import scopes_for
    from babelscope.analysis.experts import read_shard, shard_path

    path = shard_path(out_dir, step, plan.langs[0], variant)
    shard = read_shard(path)
    scopes = scopes_for(shard["layers"], shard["widths"], align)
    null = null_step(plan, ranks, scopes)
    save_null(path.parent / NULL_FILE, null, plan, scopes, key)
