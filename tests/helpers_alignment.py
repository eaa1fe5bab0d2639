"""Synthetic studies with planted structure for the alignment and null tests.

Every language has a pool of ``n`` sentences from two sources and four lengths. Concept
labels are drawn with a probability that depends only on the sentence's length (longer
sentences are more often positive: a confound), so labels are exchangeable within
(source x length) strata — exactly the null the permutation test assumes.

Units: ``n_generic`` *generic* units follow the length (they rank the positives of every
concept high, in every language); the rest is noise, except where planted:
``crosslingual``: unit ``PLANT + c`` fires on concept c in every language;
``specific``: unit ``PLANT + 10 * l + c`` fires on concept c in language l only.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

PLANT = 40


def pool_ns(members: np.ndarray | None = None, **kw) -> SimpleNamespace:
    """A pool as the experts stage sees it; every sentence a member of every concept
    unless ``members`` (n, C) says otherwise."""
    y = np.asarray(kw["labels"], dtype=bool)
    mem = np.ones_like(y) if members is None else np.asarray(members, dtype=bool)
    return SimpleNamespace(**kw, members=mem, n_pos=(y & mem).sum(0), n_neg=(~y & mem).sum(0),
                           variant="matched")  # fmt: skip


def synthetic_pools(
    rng: np.random.Generator,
    *,
    langs: tuple[str, ...] = ("eng", "spa", "deu", "zho"),
    n: int = 96,
    n_concepts: int = 4,
    n_units: int = 120,
    n_generic: int = 6,
    planted: str = "none",
    strength: float = 3.0,
    generic: float = 2.0,
    confound: bool = True,
) -> tuple[list[SimpleNamespace], list[np.ndarray]]:
    """Pools (``lang, ids, concepts, labels, sources, texts, groups``) and activations."""
    pools, xs = [], []
    lengths = np.repeat([10, 20, 40, 80], n // 4)
    sources = np.tile(["a", "b"], n // 2)
    p_pos = {10: 0.0, 20: 0.03, 40: 0.12, 80: 0.6} if confound else dict.fromkeys(lengths, 0.2)
    for li, lang in enumerate(langs):
        y = np.stack(
            [rng.random(n) < np.array([p_pos[x] for x in lengths]) for _ in range(n_concepts)], 1
        )
        for c in range(n_concepts):  # at least four positives: some in each half
            y[rng.choice(n, 4, replace=False), c] = True
        x = rng.standard_normal((n, n_units)).astype(np.float32)
        x[:, :n_generic] += (np.log2(lengths)[:, None] * generic).astype(np.float32)
        for c in range(n_concepts):
            if planted in ("crosslingual", "both"):
                x[:, PLANT + c] += strength * y[:, c]
            if planted in ("specific", "both"):
                x[:, PLANT + 10 + 10 * li + c] += strength * y[:, c]
        ids = [f"{lang}:{i}" for i in range(n)]
        pools.append(pool_ns(
            lang=lang, ids=ids, concepts=[f"c{c}" for c in range(n_concepts)], labels=y,
            sources=list(sources), texts=["x" * int(v) for v in lengths], groups=ids,
        ))  # fmt: skip
        xs.append(x)
    return pools, xs


def null_and_observed(pools, xs, *, k: int, permutations: int, seed: int = 0, m: int = 2):
    """The production path on synthetic activations: halves, AP per half, the measures and
    their permutation null (one scope: all units). Returns (observed ScopeResult, null dict)."""
    from babelscope.analysis.alignment_null import (
        _stack,
        make_plan,
        measures_over_scopes,
        null_step,
    )
    from babelscope.analysis.halves import assign_halves
    from babelscope.analysis.member_scores import half_scores

    group_of = {i: i for p in pools for i in p.ids}
    halves = assign_halves([(p.ids, p.labels) for p in pools], group_of, seed)
    plan = make_plan(pools, halves, m, permutations=permutations, seed=seed, n_bins=4, settings={})
    ranks, ap0, ap1 = [], [], []
    for i, (p, x, h) in enumerate(zip(pools, xs, halves, strict=True)):
        hr, a0, a1 = half_scores(x, p.labels, h, p.members)
        ranks.append(hr)
        ap0.append(a0[plan.pool_cols[i]])
        ap1.append(a1[plan.pool_cols[i]])
    n_units = xs[0].shape[1]
    scopes = [("all", 0, n_units, k)]
    obs = measures_over_scopes(
        _stack(plan, ap0, n_units), _stack(plan, ap1, n_units), scopes, m, items=True
    )["all"]
    null = null_step(plan, ranks, scopes)
    return obs, null
