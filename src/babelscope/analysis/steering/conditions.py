"""The forced conditions of one (checkpoint, concept, K): experts and fair baselines.

- ``experts``: the concept's top-K units by AP in the source language, forced to their
  on value (mode ``set``) or shifted by on - off (mode ``add``);
- ``other_concept``: the same for another concept's experts in the source language (does
  forcing *any* concept's experts do this?);
- ``other_lang``: the concept's experts found in another source language, with that
  language's values (the paper's Swahili control);
- ``random``: K units outside the experts, **matched to the experts' layers** (as many in
  each layer as there are experts there) and given **the same shift in units of each
  unit's spread**: expert ``i`` moves by ``z_i = (on_i - off_i) / sd_i``; the random unit
  that stands in for it moves by ``z_i * sd_j`` from its own off value. A random unit
  forced to its own ``on_p50`` (the old baseline) hardly moves at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from babelscope.analysis.intervention import Intervention
from babelscope.errors import BabelscopeError


def top_experts(scores: Any, k: int) -> np.ndarray:
    """Flat indices of the ``k`` highest-AP units (ties by index)."""
    from babelscope.analysis.experts import top_indices

    return top_indices(np.asarray(scores.ap), k)


def _units(scores: Any, flat: np.ndarray, values: np.ndarray) -> list[tuple[int, int, float]]:
    return [(*scores.unit_of(int(f)), float(v)) for f, v in zip(flat, values, strict=True)]


def expert_intervention(
    scores: Any,
    values: Any,
    k: int,
    *,
    statistic: str,
    mode: str,
    condition: str = "experts",
    kind: str = "mlp",
) -> tuple[Intervention, np.ndarray]:
    """The top-``k`` experts of ``scores`` forced with ``values`` (a ``UnitValues`` of the
    scores' language); also their shifts in units of spread (``z``)."""
    flat = top_experts(scores, k)
    on, off = values.on_off(scores, scores.concept, statistic, flat)
    z = (on - off) / values.spread[flat]
    forced = on if mode == "set" else on - off
    iv = Intervention(
        units=_units(scores, flat, forced), kind=kind, step=int(scores.step),
        concept=scores.concept, source_lang=scores.lang, statistic=statistic,
        condition=condition, mode=mode,
        meta={"mean_z": float(np.mean(z)), "median_z": float(np.median(z))},
    )  # fmt: skip
    return iv, z


def matched_random(
    scores: Any,
    values: Any,
    experts_flat: np.ndarray,
    z: np.ndarray,
    *,
    statistic: str,
    mode: str,
    seed: int,
    draw: int = 0,
    kind: str = "mlp",
) -> Intervention:
    """Random units matched to the experts' layers, each shifted by its expert's ``z``.

    Where a layer has fewer non-expert units than experts, the remainder is drawn from
    the non-expert units of all layers (``meta['unmatched']`` counts them).
    """
    rng = np.random.default_rng(seed)
    offsets = scores.offsets
    total = int(offsets[-1])
    taken = np.zeros(total, dtype=bool)
    taken[experts_flat] = True
    layer_of = np.searchsorted(offsets, experts_flat, side="right") - 1
    picks = np.empty(len(experts_flat), dtype=np.int64)
    unmatched: list[int] = []
    for li in np.unique(layer_of):
        who = np.flatnonzero(layer_of == li)
        free = np.flatnonzero(~taken[offsets[li] : offsets[li + 1]]) + offsets[li]
        n = min(len(who), len(free))
        chosen = rng.choice(free, size=n, replace=False)
        picks[who[:n]] = chosen
        taken[chosen] = True
        unmatched += list(who[n:])
    if unmatched:
        free = np.flatnonzero(~taken)
        if len(free) < len(unmatched):
            raise BabelscopeError(
                f"K = {len(experts_flat)} leaves too few other units for a random baseline: "
                "choose K of at most half the model's units"
            )
        picks[unmatched] = rng.choice(free, size=len(unmatched), replace=False)
    # A random unit stands in for an expert of its layer: the experts' shifts are
    # handed out in a random order within each layer.
    zs = np.asarray(z, dtype=np.float64).copy()
    for li in np.unique(layer_of):
        who = np.flatnonzero(layer_of == li)
        zs[who] = zs[rng.permutation(who)]
    shift = zs * values.spread[picks]
    forced = shift if mode == "add" else values.off(scores, statistic, picks) + shift
    return Intervention(
        units=_units(scores, picks, forced), kind=kind, step=int(scores.step),
        concept=scores.concept, source_lang=scores.lang, statistic=statistic,
        condition="random", seed=int(seed), mode=mode,
        meta={"draw": int(draw), "unmatched": len(unmatched), "mean_z": float(np.mean(zs))},
    )  # fmt: skip


def draw_seed(random_seed: int, step: int, concept: str, k: int, draw: int) -> int:
    """A seed per (run seed, step, concept, K, draw): draws differ, runs repeat."""
    import zlib

    key = f"{random_seed}/{step}/{concept}/{k}/{draw}".encode()
    return zlib.crc32(key)


def partner_concepts(concepts: list[str], ranked: list[str]) -> dict[str, str | None]:
    """For each steered concept, the "other concept" whose experts stand in for it: the
    next steered concept (cyclically), or with one steered concept the strongest other
    concept of ``ranked``; None when there is no other."""
    out: dict[str, str | None] = {}
    for i, c in enumerate(concepts):
        if len(concepts) > 1:
            out[c] = concepts[(i + 1) % len(concepts)]
        else:
            out[c] = next((o for o in ranked if o != c), None)
    return out
