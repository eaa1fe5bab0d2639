"""AP of many label sets from one ranking: equal to scikit-learn, ties included."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from babelscope.analysis.ap_sets import ap_of_labels, ap_of_sets, ranks


@pytest.mark.parametrize("decimals", [0, 1, 6])
def test_equals_sklearn_with_ties(decimals):
    rng = np.random.default_rng(decimals)
    x = np.round(rng.normal(size=(90, 70)), decimals).astype(np.float32)
    y = np.zeros((90, 6), bool)
    for c in range(6):
        y[rng.choice(90, [1, 2, 5, 20, 45, 89][c], replace=False), c] = True
    got = ap_of_labels(x, y)
    want = np.array(
        [[average_precision_score(y[:, c], x[:, u]) for u in range(70)] for c in range(6)]
    )
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_large_input_takes_the_parallel_kernel_and_agrees():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3000)).astype(np.float32)
    sets = [rng.choice(200, 12, replace=False) for _ in range(40)]
    got = ap_of_sets(ranks(x), sets)
    for s, pos in enumerate(sets[:3]):
        y = np.zeros(200, bool)
        y[pos] = True
        want = [average_precision_score(y, x[:, u]) for u in range(0, 3000, 301)]
        np.testing.assert_allclose(got[s, ::301], want, atol=1e-6)


def test_empty_set_is_nan_and_bad_index_is_refused():
    g = ranks(np.arange(12, dtype=np.float32).reshape(4, 3))
    out = ap_of_sets(g, [np.array([], dtype=int), np.array([3])])
    assert np.isnan(out[0]).all() and (out[1] == 1.0).all()
    with pytest.raises(ValueError):
        ap_of_sets(g, [np.array([4])])
