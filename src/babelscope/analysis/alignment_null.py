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

from babelscope.analysis.alignment_measures import MEASURES, PAIR_MEASURES, scope_measures
from babelscope.analysis.ap_sets import ap_of_sets, inverse_ranks
from babelscope.analysis.stats import length_bins, stratified_permutation
from babelscope.errors import BabelscopeError

NULL_FILE = "null.npz"
R_CHUNK = 10  # permutations whose AP arrays are held at once (memory ~ R_CHUNK x L x C x U)


@dataclass
class NullPlan:
    """What the null needs that does not depend on the checkpoint."""

    langs: list[str]
    concepts: list[str]  # concepts scored in >= 2 languages, sorted (as the align stage)
    cols: list[np.ndarray]  # per language: index in ``concepts`` of each of its label columns
    labels: list[np.ndarray]  # per language: (n, C_l) bool, columns of ``concepts`` only
    halves: list[np.ndarray]  # per language: (n,) int8
    perms: list[np.ndarray]  # per language: (R, n) stratified permutations of the pool
    m: int
    settings: dict[str, Any]

    @property
    def n_perm(self) -> int:
        return int(self.perms[0].shape[0]) if self.perms else 0

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
) -> NullPlan:
    """The null's plan from the experts pools (``lang, concepts, labels, sources, texts``)."""
    seen: dict[str, int] = {}
    for p in pools:
        for c in p.concepts:
            seen[c] = seen.get(c, 0) + 1
    concepts = sorted(c for c, n in seen.items() if n >= 2)  # as the align stage compares them
    perms = []
    for p, half in zip(pools, halves, strict=True):
        rng = np.random.default_rng([seed, zlib.crc32(p.lang.encode())])
        # Within each half too: the halves were dealt to balance the real labels, so the
        # permuted labels keep every concept's positives per half (the null conditions on it).
        st = np.char.add(np.asarray(half).astype(str), strata(p.sources, p.texts, n_bins))
        perms.append(
            stratified_permutation(st, rng, permutations).astype(np.int32)
            if permutations
            else np.zeros((0, len(p.ids)), dtype=np.int32)
        )
    return NullPlan(
        langs=[p.lang for p in pools], concepts=concepts,
        cols=[np.array([concepts.index(c) for c in p.concepts if c in seen and seen[c] >= 2],
                       dtype=np.int64) for p in pools],
        labels=[np.asarray(p.labels, dtype=bool)[:, [j for j, c in enumerate(p.concepts) if seen[c] >= 2]]
                for p in pools], halves=list(halves),
        perms=perms, m=m, settings=settings,
    )  # fmt: skip


def half_sets(labels: np.ndarray, half: np.ndarray, h: int) -> list[np.ndarray]:
    """Each concept's positives among the sentences of half ``h`` (indices into that half)."""
    sub = labels[half == h]
    return [np.flatnonzero(sub[:, c]) for c in range(labels.shape[1])]


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


def null_step(
    plan: NullPlan,
    ranks: list[tuple[np.ndarray, np.ndarray]],
    scopes: list[tuple[str, int, int, int]],
) -> dict[str, np.ndarray]:
    """Null values of every measure for one checkpoint.

    ``ranks[i]`` are the ``N_ge`` arrays (sentences of the half, units) of language i's two
    halves. Returns ``values`` (R, scopes, measures) and ``pairs`` (R, scopes,
    pair measures, L, L).
    """
    from babelscope.progress import track

    n_units = ranks[0][0].shape[1]
    n_r = plan.n_perm
    values = np.full((n_r, len(scopes), len(MEASURES)), np.nan)
    pairs = np.full(
        (n_r, len(scopes), len(PAIR_MEASURES), len(plan.langs), len(plan.langs)), np.nan
    )
    chunks = [range(s, min(s + R_CHUNK, n_r)) for s in range(0, n_r, R_CHUNK)]
    invs = [tuple(inverse_ranks(r) for r in pair) for pair in ranks]
    for rs in track(chunks, f"null: {n_r} permutations", transient=True):
        per_half = []
        for h in (0, 1):
            per_lang = []
            for i in range(len(plan.langs)):
                sets = []
                for r in rs:
                    y = plan.labels[i][plan.perms[i][r]]
                    sets += half_sets(y, plan.halves[i], h)
                ap = ap_of_sets(ranks[i][h], sets, invs[i][h])
                per_lang.append(ap.reshape(len(rs), len(plan.cols[i]), n_units))
            per_half.append(_stack(plan, per_lang, n_units))
        for j, r in enumerate(rs):
            res = measures_over_scopes(
                per_half[0][j], per_half[1][j], scopes, plan.m, diffconcept=False, real=plan.real
            )
            for si, (name, *_rest) in enumerate(scopes):
                values[r, si] = [res[name].value[mm] for mm in MEASURES]
                pairs[r, si] = [res[name].pairs[pm] for pm in PAIR_MEASURES]
    return {"values": values, "pairs": pairs}


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
        measures=np.array(MEASURES, dtype=str), pair_measures=np.array(PAIR_MEASURES, dtype=str),
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


def half_counts(labels: np.ndarray, half: np.ndarray) -> np.ndarray:
    """(2, C) positives of every concept in each half."""
    return np.stack([labels[half == h].sum(axis=0) for h in (0, 1)]).astype(np.int64)


def half_scores(x: np.ndarray, labels: np.ndarray, half: np.ndarray):
    """Ranks of every unit on each half, and the AP on each half of every concept."""
    from babelscope.analysis.ap_sets import ranks

    r = [ranks(x[half == h]) for h in (0, 1)]
    ap = [ap_of_sets(r[h], half_sets(labels, half, h)) for h in (0, 1)]
    return r[0], r[1], ap[0], ap[1]


def write_null(out_dir: Path, step: int, plan: Any, ranks: list, key: str, align: Any) -> None:
    from babelscope.analysis.alignment import scopes_for
    from babelscope.analysis.experts import read_shard, shard_path

    shard = read_shard(shard_path(out_dir, step, plan.langs[0]))
    scopes = scopes_for(shard["layers"], shard["widths"], align)
    null = null_step(plan, ranks, scopes)
    save_null(shard_path(out_dir, step, plan.langs[0]).parent / NULL_FILE, null, plan, scopes, key)
