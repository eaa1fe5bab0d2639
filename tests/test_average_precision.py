"""Exact AP of every unit: equal to scikit-learn (ties, constant units, one positive)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score

from babelscope.analysis.average_precision import (
    average_precision,
    score_units,
    unit_statistics,
)
from babelscope.errors import BabelscopeError


def sklearn_ap(x, y):
    return np.array([average_precision_score(y, x[:, u]) for u in range(x.shape[1])])


@st.composite
def scored(draw, dtype=np.float32):
    """Scores with many ties (few distinct values, zeros, -0.0) and labels with >= 1 positive."""
    n = draw(st.integers(1, 40))
    u = draw(st.integers(1, 5))
    values = st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.25, 3.0, 1e-7]) | st.floats(
        -100, 100, allow_nan=False, width=32
    )
    x = draw(hnp.arrays(dtype, (n, u), elements=values))
    y = draw(hnp.arrays(np.bool_, n))
    y[draw(st.integers(0, n - 1))] = True
    return x, y


@settings(max_examples=200, deadline=None)
@given(scored())
def test_ap_equals_sklearn_float32(data):
    x, y = data
    ref = sklearn_ap(x, y)
    np.testing.assert_allclose(average_precision(x, y, threads=1), ref, atol=1e-9, rtol=0)
    # The many-concept path (shared ranking) gives the same numbers.
    multi = score_units(x, np.c_[y, y], threads=1)
    np.testing.assert_allclose(multi.ap[0], ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(multi.ap[1], ref, atol=1e-9, rtol=0)


@settings(max_examples=100, deadline=None)
@given(scored(dtype=np.float64))
def test_ap_equals_sklearn_float64(data):
    x, y = data
    x = x + np.float64(1e-12) * (x > 1)  # values float32 cannot hold: the float64 path
    ref = sklearn_ap(x, y)
    np.testing.assert_allclose(average_precision(x, y, threads=1), ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(score_units(x, y, threads=1).ap[0], ref, atol=1e-9, rtol=0)


def test_constant_units_single_positive_and_chunks():
    rng = np.random.default_rng(0)
    n = 50
    x = np.round(rng.standard_normal((n, 37)), 1).astype(np.float32)
    x[:, 0] = 0.0  # constant: AP = positive rate
    x[:, 1] = np.maximum(x[:, 1], 0)  # ReLU-like, many zeros
    y = np.zeros(n, bool)
    y[7] = True  # a single positive
    ref = sklearn_ap(x, y)
    assert ref[0] == pytest.approx(1 / n)
    for chunk, threads in [(None, 1), (4, 2), (1, 3)]:
        got = average_precision(x, y, chunk_units=chunk, threads=threads)
        np.testing.assert_allclose(got, ref, atol=1e-12, rtol=0)
        np.testing.assert_allclose(
            score_units(x, y, chunk_units=chunk, threads=threads).ap[0], ref, atol=1e-12
        )
    # A positive that scores highest alone: AP 1.
    x[7, 2] = 99
    assert average_precision(x, y)[2] == 1.0


def test_unit_statistics_and_score_units_agree():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 9)).astype(np.float32)
    y = rng.random(60) < 0.3
    st_ = unit_statistics(x, y)
    np.testing.assert_allclose(st_.on_p50, np.percentile(x[y], 50, axis=0), rtol=1e-6)
    np.testing.assert_allclose(st_.on_p90, np.percentile(x[y], 90, axis=0), rtol=1e-6)
    np.testing.assert_allclose(st_.off_mean, x[~y].mean(axis=0), rtol=1e-5, atol=1e-6)
    res = score_units(x, np.c_[y, ~y])
    np.testing.assert_allclose(res.on_p50[0], st_.on_p50, rtol=1e-12)
    np.testing.assert_allclose(res.on_p90[0], st_.on_p90, rtol=1e-12)
    np.testing.assert_allclose(res.off_mean[0], st_.off_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.on_p50[1], np.percentile(x[~y], 50, axis=0), rtol=1e-6)
    assert list(res.n_pos) == [y.sum(), (~y).sum()]


def test_degenerate_labels():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.isnan(average_precision(x, np.zeros(4, bool))).all()  # no positive: undefined
    res = score_units(x, np.c_[np.zeros(4, bool), np.ones(4, bool)])
    assert np.isnan(res.ap[0]).all() and np.isnan(res.on_p50[0]).all()
    np.testing.assert_allclose(res.ap[1], 1.0)  # no negative: every threshold is precise
    assert np.isnan(res.off_mean[1]).all()
    st_ = unit_statistics(x, np.ones(4, bool))
    assert np.isnan(st_.off_mean).all()


def test_bad_input():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(BabelscopeError, match="2-D"):
        average_precision(np.zeros(4), np.ones(4, bool))
    with pytest.raises(BabelscopeError, match="one row per sentence"):
        average_precision(x, np.ones(3, bool))
    with pytest.raises(BabelscopeError, match="binary"):
        average_precision(x, np.array([0, 1, 2, 1]))
    for bad in (np.nan, np.inf, -np.inf):
        x[0, 0] = bad
        with pytest.raises(BabelscopeError, match="NaN or infinite"):
            score_units(x, np.ones(4, bool))
        with pytest.raises(BabelscopeError, match="NaN or infinite"):
            average_precision(x.astype(np.float64) + 1e-300, np.ones(4, bool))


# -- the fast path: blocks of <= 512 keys with a label bit, and its fallbacks -------------


@st.composite
def scored_long(draw):
    """More sentences than one sort block holds, few distinct values: many ties across blocks."""
    n = draw(st.integers(513, 1300))
    u = draw(st.integers(1, 3))
    levels = draw(st.lists(st.floats(-5, 5, width=32), min_size=1, max_size=12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array(levels + [0.0, -0.0], dtype=np.float32), size=(n, u))
    n_pos = draw(st.sampled_from([1, 2, 17, 100, 255, 256, 257, 400]))
    y = np.zeros(n, bool)
    y[rng.choice(n, min(n_pos, n), replace=False)] = True
    return x, y


@settings(max_examples=40, deadline=None)
@given(scored_long())
def test_ap_equals_sklearn_many_blocks(data):
    x, y = data
    ref = sklearn_ap(x, y)
    np.testing.assert_allclose(average_precision(x, y, threads=1), ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(score_units(x, y, threads=1).ap[0], ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    "kind", ["gaussian", "wide", "tiny", "huge", "negative", "relu", "constant_tie"]
)
@pytest.mark.parametrize("n_pos", [1, 90, 256, 300])
def test_ap_equals_sklearn_ranges(kind, n_pos):
    """Key ranges: direct, rescaled (wide), and the general path (tiny/huge magnitudes)."""
    rng = np.random.default_rng(n_pos)
    n = 1100
    x = rng.standard_normal((n, 7)).astype(np.float32)
    if kind == "wide":  # both signs, large magnitudes: needs the rescaled keys
        x *= np.float32(1e6)
        x[::3] /= np.float32(1e9)
    elif kind == "tiny":  # non-zero |x| < 2**-60 next to large ones: general path
        x[:, :3] *= np.float32(1e-25)
        x[5, 3] = np.float32(-1e-30)
        x[6, 3] = np.float32(1e30)
    elif kind == "huge":  # |x| >= 2**64 with both signs: general path
        x *= np.float32(1e25)
    elif kind == "negative":
        x = -np.abs(x)
    elif kind == "relu":
        x = np.round(np.maximum(x, 0), 1)
        x[x == 0] = np.float32(-0.0) * (rng.random((x == 0).sum()) < 0.5)
    elif kind == "constant_tie":
        x[:, :4] = np.float32(2.5)
        x[:500, 4] = np.float32(-1.0)
    y = np.zeros(n, bool)
    y[rng.choice(n, n_pos, replace=False)] = True
    ref = sklearn_ap(x, y)
    for chunk, threads in [(None, 1), (3, 2)]:
        got = average_precision(x, y, chunk_units=chunk, threads=threads)
        np.testing.assert_allclose(got, ref, atol=1e-9, rtol=0)
        got = score_units(x, y, chunk_units=chunk, threads=threads).ap[0]
        np.testing.assert_allclose(got, ref, atol=1e-9, rtol=0)


def test_score_units_many_labels_shared_ranking():
    """Many labels share one full ranking per unit; few labels take the fast path: same AP."""
    rng = np.random.default_rng(3)
    n = 700
    x = np.round(rng.standard_normal((n, 5)), 1).astype(np.float32)
    x[:, 0] = np.maximum(x[:, 0], 0)
    labels = rng.random((n, 12)) < np.linspace(0.002, 0.5, 12)
    labels[:, 3] = False  # no positives
    many = score_units(x, labels, threads=2)
    few = score_units(x, labels[:, :4], threads=1)
    for c in range(12):
        if not labels[:, c].any():
            assert np.isnan(many.ap[c]).all()
            continue
        ref = sklearn_ap(x, labels[:, c])
        np.testing.assert_allclose(many.ap[c], ref, atol=1e-9, rtol=0)
        if c < 4:
            np.testing.assert_allclose(few.ap[c], ref, atol=1e-9, rtol=0)
            for k in ("on_p50", "on_p90", "off_mean"):
                np.testing.assert_allclose(getattr(few, k)[c], getattr(many, k)[c], rtol=1e-12)


@pytest.mark.parametrize("n_pos", [3, 300])
def test_nan_in_float32_found_chunk_by_chunk(n_pos):
    x = np.zeros((600, 40), np.float32)
    y = np.zeros(600, bool)
    y[:n_pos] = True
    for bad in (np.nan, np.inf, -np.inf):
        x[599, 37] = bad
        with pytest.raises(BabelscopeError, match="NaN or infinite"):
            average_precision(x, y, chunk_units=8, threads=2)
        with pytest.raises(BabelscopeError, match="NaN or infinite"):
            score_units(x, y, chunk_units=8, threads=1)
