"""The permutation null of the alignment measures, on planted structure: it holds its size
under the null, finds planted cross-lingual experts, and does not call generic units
(which rank every concept's positives high) concept-specific."""

import numpy as np
import pytest

from babelscope.analysis.alignment_measures import MEASURES
from babelscope.analysis.alignment_null import make_plan, null_values, strata
from babelscope.analysis.stats import permutation_pvalue
from helpers_alignment import null_and_observed, synthetic_pools

OVERLAP = MEASURES.index("overlap")


def _p(obs, null, measure="overlap"):
    return permutation_pvalue(obs.value[measure], null_values(null)[:, 0, MEASURES.index(measure)])


def test_false_positive_rate_at_5_percent():
    """200 studies without any concept unit (generic length units only): p <= 0.05 in 2-8 %."""
    rng = np.random.default_rng(2024)
    hits, values, floors = 0, [], []
    for _ in range(200):
        pools, xs = synthetic_pools(rng, n=64, n_units=60, n_concepts=3, planted="none")
        obs, null = null_and_observed(
            pools, xs, k=3, permutations=19, seed=int(rng.integers(1 << 30))
        )
        hits += _p(obs, null) <= 0.05
        values.append(obs.value["overlap"])
        floors.append(3 / 60)
    assert 0.02 <= hits / 200 <= 0.08, hits
    # the generic units lift overlap far above the independent-sets floor K/units: that
    # floor would have called every one of these studies "aligned"
    assert np.mean(values) > 3 * np.mean(floors)


def test_planted_crosslingual_experts_are_detected():
    rng = np.random.default_rng(7)
    pools, xs = synthetic_pools(rng, planted="crosslingual", n_generic=1)
    obs, null = null_and_observed(pools, xs, k=4, permutations=99)
    for measure in ("overlap", "jaccard", "transfer_ap"):
        assert _p(obs, null, measure) <= 0.01, measure
    # and they are about the concept: well above the different-concept reference
    assert obs.value["overlap"] > obs.diffconcept["overlap"] + 0.1
    assert obs.value["transfer_ap"] > obs.diffconcept["transfer_ap"]


def test_planted_crosslingual_count_without_confound():
    """The cross-lingual count finds planted units where labels do not follow length (with
    the length confound, units of correlated concepts count in the null too)."""
    rng = np.random.default_rng(8)
    pools, xs = synthetic_pools(rng, planted="crosslingual", n_generic=0, confound=False)
    obs, null = null_and_observed(pools, xs, k=4, permutations=99, m=3)
    assert _p(obs, null, "crosslingual") <= 0.01
    assert obs.value["crosslingual"] >= 1


def test_language_specific_experts_do_not_align():
    """Planted experts of one language each: held-out self AP is high, overlap is not."""
    rng = np.random.default_rng(11)
    pools, xs = synthetic_pools(rng, planted="specific")
    obs, null = null_and_observed(pools, xs, k=4, permutations=99)
    assert _p(obs, null, "self_ap") <= 0.01
    assert _p(obs, null, "overlap") > 0.05


def test_generic_units_are_not_concept_specific():
    """Generic units make overlap high, but it is no higher than with other concepts' sets."""
    rng = np.random.default_rng(5)
    pools, xs = synthetic_pools(rng, planted="none")
    obs, null = null_and_observed(pools, xs, k=4, permutations=99)
    assert obs.value["overlap"] > 0.2  # high in absolute terms (floor K/units = 0.03) ...
    assert obs.value["overlap"] <= obs.diffconcept["overlap"] + 0.05  # ... for any concept
    assert _p(obs, null) > 0.05
    assert _p(obs, null, "crosslingual") > 0.05


def test_permutations_keep_strata_and_halves():
    rng = np.random.default_rng(3)
    pools, xs = synthetic_pools(rng, n=64)
    halves = [np.arange(64) % 2 for _ in pools]
    plan = make_plan(pools, halves, 2, permutations=5, seed=1, n_bins=4, settings={})
    again = make_plan(pools, halves, 2, permutations=5, seed=1, n_bins=4, settings={})
    moved = False
    for i, (p, h) in enumerate(zip(pools, halves, strict=True)):
        st = strata(p.sources, p.texts, 4)
        for hh in (0, 1):
            for q, j in enumerate(plan.pool_cols[i]):
                idx = np.flatnonzero(p.members[:, j] & (h == hh))
                real = np.flatnonzero(p.labels[idx, j])
                pos = plan.positives[i][hh][q]
                assert (pos == again.positives[i][hh][q]).all()  # seeded
                for r in range(5):  # the positives' strata (source x length) are kept
                    assert sorted(st[idx][pos[r]]) == sorted(st[idx][real])
                    moved |= set(pos[r]) != set(real)
    assert moved


@pytest.mark.parametrize("permutations", [0])
def test_no_null_when_disabled(permutations):
    rng = np.random.default_rng(0)
    pools, xs = synthetic_pools(rng, n=32)
    plan = make_plan(
        pools, [np.arange(32) % 2] * 4, 2, permutations=0, seed=0, n_bins=4, settings={}
    )
    assert plan.n_perm == permutations
