"""Original ↔ control alignment: the known-positive case of the study (issue 14).

A control language (``eng~x``, :mod:`babelscope.corpora.cipher`) has its original's
sentences and concept labels and shares no word piece with it, so whatever concept
experts the two share is cross-lingual sharing that no lexical overlap explains. Per
checkpoint, scope (each layer and ``all``) and concept, with **cross-fitting**: the pool's
sentences are split in two halves (seeded, stratified by label, as the alignment stage
does); experts are chosen in the original on half A and in the control on half B, so no
sentence takes part on both sides (in either language).

``overlap``      |E_K(c, orig | A) ∩ E_K(c, ctrl | B)| / K
``transfer_ap``  mean AP on (c, ctrl | B) of E_K(c, orig | A)
``self_ap``      mean AP on (c, orig | B) of E_K(c, orig | A): the ceiling of transfer
                 (its null permutes the original's half-B labels the same way)

Each measure is averaged over concepts and shown beside
* a **permutation null** computed the way the measure is: the control's labels permuted
  within strata of source × length bin (:mod:`babelscope.analysis.stats.nulls`), experts
  re-chosen, the same average taken; ``null_mean``, ``null_p95``, ``p_value``;
* the **different-concept reference** ``diffconcept``: the same measure between E(c, orig)
  and the control's E(c′) (or AP on c′) for c′ ≠ c;
* a 95 % bootstrap interval over concepts (``ci_lo``, ``ci_hi``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babelscope.analysis.average_precision import score_units
from babelscope.analysis.experts import top_indices
from babelscope.analysis.stats.intervals import bootstrap_interval
from babelscope.analysis.stats.nulls import (
    expected_random_ap,
    length_bins,
    null_summary,
    stratified_permutation,
)
from babelscope.errors import BabelscopeError

MEASURES = ("overlap", "transfer_ap", "self_ap")
ALL = "all"


def _pool(data_dir: Path, original: str, control: str) -> dict[str, Any]:
    """Texts, labels and strata of the original's pool and the control's same sentences."""
    from babelscope.concepts.labels import label_matrix, load_concept_labels
    from babelscope.corpora.cipher import control_id
    from babelscope.corpora.corpus import load_corpus

    labels = load_concept_labels(data_dir)
    ids, concepts, y = label_matrix(labels, original)
    cids, cconcepts, cy = label_matrix(labels, control, concepts)
    want = [control_id(control, i) for i in ids]
    if cids != sorted(want) or sorted(cids) != cids:
        raise BabelscopeError(
            f"the pools of {original} and {control} differ: rebuild the data (babelscope data build)"
        )
    pos = {i: k for k, i in enumerate(cids)}
    cy = cy[[pos[w] for w in want]]
    if not np.array_equal(y, cy):
        raise BabelscopeError(
            f"{control} does not carry the labels of {original}: rebuild the data"
        )
    corpus = load_corpus(data_dir, languages=[original, control]).set_index("id")
    text_o = corpus.loc[ids, "text"].astype(str).tolist()
    text_c = corpus.loc[want, "text"].astype(str).tolist()
    strata = np.array(
        [f"{s}|{b}" for s, b in zip(corpus.loc[want, "source"], length_bins([len(t.split()) for t in text_c]), strict=True)]
    )  # fmt: skip
    return dict(ids=ids, concepts=concepts, y=y, text_o=text_o, text_c=text_c, strata=strata)


def halves(ids: list[str], y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of halves A and B of the pool (a control sentence is in the half of
    its original): :func:`babelscope.analysis.halves.assign_halves`, stratified by label."""
    from babelscope.analysis.halves import assign_halves

    (h,) = assign_halves([(ids, y)], {i: i for i in ids}, seed=seed)
    return h == 0, h == 1


def _scopes(widths: list[int], k_fraction: float) -> list[tuple[str, slice, int]]:
    """(scope, slice of the flat units, K): each layer and the whole model."""
    out, start = [], 0
    for layer, w in enumerate(widths):
        out.append((str(layer), slice(start, start + w), max(1, round(k_fraction * w))))
        start += w
    out.append((ALL, slice(0, start), max(1, round(k_fraction * start))))
    return out


def _members(ap: np.ndarray, k: int) -> np.ndarray:
    """(C, U) float: 1 where a unit is among the top ``k`` of a concept's row."""
    m = np.zeros(ap.shape, dtype=np.float64)
    for c in range(ap.shape[0]):
        m[c, top_indices(ap[c], k)] = 1.0
    return m


def _measures(
    member_o: np.ndarray, ap_o_b: np.ndarray, ap_c_b: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Per concept, the measures and their different-concept references.

    ``member_o``: the original's experts (half A); ``ap_o_b`` / ``ap_c_b``: AP of every
    unit on half B in the original / the control."""
    n_c = member_o.shape[0]
    inter = member_o @ _members(ap_c_b, k).T / k  # [c, d]: E(c, orig) ∩ E(d, ctrl)
    transfer = member_o @ np.nan_to_num(ap_c_b).T / k  # [c, d]: AP on d of E(c, orig)
    off = ~np.eye(n_c, dtype=bool)

    def diff(m: np.ndarray) -> np.ndarray:
        if n_c < 2:
            return np.full(n_c, np.nan)
        return np.where(off, m, 0.0).sum(1) / (n_c - 1)

    return {
        "overlap": np.diag(inter).copy(),
        "transfer_ap": np.diag(transfer).copy(),
        "self_ap": (member_o * np.nan_to_num(ap_o_b)).sum(1) / k,
        "overlap_diff": diff(inter),
        "transfer_ap_diff": diff(transfer),
    }


def control_alignment(
    pooled_o: np.ndarray,
    pooled_c: np.ndarray,
    widths: list[int],
    pool: dict[str, Any],
    *,
    k_fraction: float = 0.01,
    permutations: int = 50,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows (scope, measure, k, value, null_mean, null_p95, p_value, n_null, diffconcept,
    chance, ci_lo, ci_hi, n_concepts) from pooled activations ``(n, units)`` of the two
    pools. ``chance``: K / units for overlap (independent uniform sets: a floor, not the
    reference), the expected AP of a random ranking on half B for the AP measures."""
    y = pool["y"]
    a, b = halves(pool["ids"], y, seed)
    keep = (y[a].sum(0) > 0) & (y[b].sum(0) > 0) & (y[b].sum(0) < b.sum())
    if not keep.any():
        raise BabelscopeError(
            "no concept has positives in both halves of the pool: more data needed"
        )
    y = y[:, keep]
    ap_o_a = score_units(pooled_o[a], y[a]).ap
    ap_o_b = score_units(pooled_o[b], y[b]).ap
    ap_c_b = score_units(pooled_c[b], y[b]).ap
    rng = np.random.default_rng(seed)
    strata_b = pool["strata"][b]
    null_ap, null_self = [], []
    for _ in range(permutations):
        perm = stratified_permutation(strata_b, rng)
        null_ap.append(score_units(pooled_c[b], y[b][perm]).ap)
        # The ceiling's own null: the original's half-B labels permuted the same way.
        null_self.append(score_units(pooled_o[b], y[b][perm]).ap)
    # AP of a random ranking on half B, averaged over concepts: chance of (self/transfer) AP.
    chance_ap = float(np.mean(expected_random_ap(y[b].sum(0), int(b.sum()))))
    rows = []
    for scope, sl, k in _scopes(widths, k_fraction):
        member_o = _members(ap_o_a[:, sl], k)
        obs = _measures(member_o, ap_o_b[:, sl], ap_c_b[:, sl], k)
        nulls = [
            _measures(member_o, zo[:, sl], zc[:, sl], k)
            for zo, zc in zip(null_self, null_ap, strict=True)
        ]
        for m in MEASURES:
            v = obs[m]
            row = dict(scope=scope, measure=m, k=k, value=float(np.nanmean(v)))
            row |= null_summary([np.nanmean(z[m]) for z in nulls], row["value"])
            diff = obs.get(f"{m}_diff")
            row["diffconcept"] = float(np.nanmean(diff)) if diff is not None else float("nan")
            row["chance"] = k / (sl.stop - sl.start) if m == "overlap" else chance_ap
            row["ci_lo"], row["ci_hi"] = bootstrap_interval(v, seed=seed)
            row["n_concepts"] = int(keep.sum())
            rows.append(row)
    return pd.DataFrame(rows)


def control_alignment_series(
    series: Any,
    data_dir: str | Path,
    *,
    languages: list[str] | None = None,
    steps: list[int] | None = None,
    k_fraction: float = 0.01,
    permutations: int = 50,
    seed: int = 0,
    device: str = "cpu",
) -> pd.DataFrame:
    """:func:`control_alignment` at every checkpoint (or ``steps``) of ``series`` (a
    :class:`~babelscope.checkpoints.series.CheckpointSeries` or anything
    ``resolve_series`` takes). ``languages``: ``[original, control]`` (default: the data's
    first control)."""
    from babelscope.activations.extract import extract_pooled
    from babelscope.checkpoints.series import load_checkpoint, resolve_series
    from babelscope.corpora.cipher import load_ciphers
    from babelscope.progress import track

    data_dir = Path(data_dir)
    if languages is None:
        ciphers = load_ciphers(data_dir)
        if not ciphers:
            raise BabelscopeError(
                f"{data_dir} has no control language: build it with `babelscope data build --controls eng`"
            )
        languages = [ciphers[0].original, ciphers[0].code]
    original, control = languages
    pool = _pool(data_dir, original, control)
    if not hasattr(series, "checkpoints"):
        series = resolve_series(str(series))
    ckpts = [c for c in series.checkpoints if steps is None or c.step in steps]
    frames = []
    for ckpt in track(ckpts, f"{original} ↔ {control} alignment"):
        loaded = load_checkpoint(ckpt, device=device)
        po = extract_pooled(loaded.model, loaded.tokenizer, pool["text_o"], device=device)
        pc = extract_pooled(loaded.model, loaded.tokenizer, pool["text_c"], device=device)
        df = control_alignment(
            po.flat(), pc.flat(), [po.widths[la] for la in po.layers], pool,
            k_fraction=k_fraction, permutations=permutations, seed=seed,
        )  # fmt: skip
        df.insert(0, "step", ckpt.step)
        df.insert(1, "original", original)
        df.insert(2, "control", control)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


__all__ = ["MEASURES", "control_alignment", "control_alignment_series", "halves"]
