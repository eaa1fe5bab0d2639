"""The statistics module: expected AP of a random ranking, permutations, p-values, intervals,
paired tests."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from babelscope.analysis.stats import (
    bootstrap_interval,
    expected_random_ap,
    length_bins,
    mcnemar_exact,
    null_summary,
    paired_permutation_test,
    permutation_pvalue,
    stratified_permutation,
    wilson_interval,
)


@pytest.mark.parametrize(("p", "n"), [(1, 10), (3, 20), (15, 500), (40, 60), (60, 60)])
def test_expected_ap_matches_monte_carlo(p, n):
    """The closed form equals the mean AP (sklearn's, ties included) of random rankings."""
    rng = np.random.default_rng(p * 1000 + n)
    y = np.zeros(n, bool)
    y[:p] = True
    aps = np.array([average_precision_score(y, rng.random(n)) for _ in range(1500)])
    se = aps.std(ddof=1) / np.sqrt(len(aps))
    assert abs(aps.mean() - expected_random_ap(p, n)) < 4 * se + 1e-12


def test_expected_ap_is_not_the_positive_rate():
    assert expected_random_ap(15, 500) == pytest.approx(0.0413, abs=5e-4)
    assert expected_random_ap(15, 500) > 15 / 500
    assert expected_random_ap(5, 5) == 1.0
    with pytest.raises(ValueError):
        expected_random_ap(0, 10)


def test_tied_scores_are_not_a_random_ranking():
    """A constant score gets exactly P/N (every item tied), below the random-ranking E[AP]."""
    y = np.r_[np.ones(5, bool), np.zeros(45, bool)]
    assert average_precision_score(y, np.zeros(50)) == pytest.approx(0.1)
    assert expected_random_ap(5, 50) > 0.1


def test_stratified_permutation_stays_in_strata():
    rng = np.random.default_rng(0)
    strata = np.array(list("aabbbcccc"))
    perms = stratified_permutation(strata, rng, 50)
    assert perms.shape == (50, 9)
    for perm in perms:
        assert (strata[perm] == strata).all()
        assert sorted(perm) == list(range(9))
    assert len({tuple(p) for p in perms}) > 10
    single = stratified_permutation(strata, np.random.default_rng(1))
    assert single.shape == (9,)


def test_length_bins():
    b = length_bins([1, 2, 3, 4, 5, 6, 7, 8], 4)
    assert b.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert length_bins([1, 1, 2, 2], 2).tolist() == [0, 0, 1, 1]
    assert length_bins([5, 5, 5], 4).tolist() == [0, 0, 0]


def test_permutation_pvalue_and_summary():
    null = np.arange(99) / 100
    assert permutation_pvalue(2.0, null) == pytest.approx(1 / 100)
    assert permutation_pvalue(-1.0, null) == 1.0
    assert permutation_pvalue(0.5, null, alternative="less") == pytest.approx(52 / 100)
    s = null_summary(null, 0.9)
    assert s["n_null"] == 99 and s["p_value"] == pytest.approx(10 / 100)
    assert s["null_p95"] == pytest.approx(np.percentile(null, 95))
    assert np.isnan(permutation_pvalue(0.1, []))


def test_permutation_pvalue_is_uniform_under_the_null():
    rng = np.random.default_rng(3)
    ps = [permutation_pvalue(rng.normal(), rng.normal(size=19)) for _ in range(4000)]
    assert np.mean(np.array(ps) <= 0.05) == pytest.approx(0.05, abs=0.012)


def test_wilson_interval():
    lo, hi = wilson_interval(5, 100)
    assert lo == pytest.approx(0.0215, abs=1e-3) and hi == pytest.approx(0.1118, abs=1e-3)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(np.array([0, 10]), np.array([10, 10]))
    assert hi[1] == pytest.approx(1.0) and lo[0] == 0.0
    lo, hi = wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_wilson_coverage():
    rng = np.random.default_rng(0)
    cover = 0
    for _ in range(2000):
        k = rng.binomial(100, 0.05)
        lo, hi = wilson_interval(k, 100)
        cover += lo <= 0.05 <= hi
    assert cover / 2000 > 0.92


def test_bootstrap_interval_two_level():
    rng = np.random.default_rng(0)
    # 20 concepts with their own mean, 10 pairs each: the spread between concepts dominates
    means = rng.normal(0.5, 0.2, 20)
    vals = np.concatenate([m + rng.normal(0, 0.01, 10) for m in means])
    clusters = np.repeat(np.arange(20), 10)
    lo, hi = bootstrap_interval(vals, clusters=clusters)
    naive_lo, naive_hi = bootstrap_interval(vals)
    assert lo < vals.mean() < hi
    assert (hi - lo) > 2 * (naive_hi - naive_lo)  # clustering widens it, as it must
    assert np.isnan(bootstrap_interval([1.0])[0])


def test_paired_tests():
    a = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    b = np.zeros(100, bool)
    r = mcnemar_exact(a, b)
    assert r["n_ab"] == 30 and r["p_value"] < 1e-6
    assert mcnemar_exact(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(a, b[:5])
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    assert paired_permutation_test(x + 1, x)["p_value"] < 0.001
    assert paired_permutation_test(x, x + rng.normal(0, 1e-9, 50))["p_value"] > 0.01
