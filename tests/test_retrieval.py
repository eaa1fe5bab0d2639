"""Translation retrieval: planted controls with known answers, chance, the null, errors."""

from __future__ import annotations

import numpy as np
import pytest

from babelscope.analysis.representations.retrieval import (
    centre_languages,
    cosine_tensor,
    ordered_pairs,
    random_pairings,
    retrieval,
)
from babelscope.errors import BabelscopeError


def planted(n_lang=6, n=40, d=64, content=1.0, offset=20.0, noise=0.3, seed=0):
    """Translations share a content vector; every language adds a large constant offset."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)) * content
    off = rng.normal(size=(n_lang, 1, d)) * offset
    return z[None] + off + rng.normal(size=(n_lang, n, d)) * noise


def test_language_offset_hides_translations_until_centred():
    x = planted()
    raw = retrieval(x, n_permutations=50)
    centred = retrieval(x, centred=True, n_permutations=50)
    assert raw.chance == pytest.approx(1 / 40)
    # Raw: the offset dominates the cosine, so the neighbour is near random.
    assert raw.precision < 0.25
    assert centred.precision > 0.95
    assert centred.precision > centred.row()["null_p95"]
    assert centred.ci_low <= centred.precision <= centred.ci_high
    assert centred.row()["p_value"] == pytest.approx(1 / 51)


def test_no_shared_content_stays_at_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 50, 32))
    res = retrieval(x, centred=True, n_permutations=200)
    row = res.row()
    assert abs(row["null_mean"] - 1 / 50) < 0.005  # the null sits at chance
    assert res.precision < 0.08
    assert row["p_value"] > 0.01


def test_identical_languages_retrieve_perfectly_and_pairs_are_ordered():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(10, 8))
    x = np.stack([z, z, z])
    res = retrieval(x, n_permutations=10)
    assert res.precision == 1.0
    a, b = ordered_pairs(3)
    assert len(a) == 6 and not np.any(a == b)
    assert np.all(res.per_pair == 1.0)


def test_helpers():
    x = np.arange(24, dtype=float).reshape(2, 3, 4)
    c = centre_languages(x)
    assert np.allclose(c.mean(axis=1), 0)
    cos = cosine_tensor(x)
    assert cos.shape == (2, 2, 3, 3)
    assert np.allclose(np.diagonal(cos[0, 0]), 1)
    p = random_pairings(5, 3, 7, seed=0)
    assert p.shape == (5, 3, 7)
    assert np.all(np.sort(p, axis=2) == np.arange(7))
    assert np.array_equal(p, random_pairings(5, 3, 7, seed=0))


def test_bad_input_is_a_user_error():
    with pytest.raises(BabelscopeError, match="at least two languages"):
        retrieval(np.zeros((1, 5, 3)))
    bad = np.ones((2, 3, 2))
    bad[0, 0, 0] = np.nan
    with pytest.raises(BabelscopeError, match="NaN"):
        retrieval(bad)


def test_precomputed_cosines_give_the_same_result():
    from babelscope.analysis.representations.retrieval import pair_cosines
    from babelscope.analysis.representations.similarity import margin

    x = planted(n_lang=3, n=12, d=8)
    p = random_pairings(20, 6, 12, seed=1)
    for centred in (False, True):
        cos = pair_cosines(x, centred)
        a = retrieval(x, centred=centred, pairings=p)
        b = retrieval(x, pairings=p, cos=cos)
        assert a.precision == b.precision and np.array_equal(a.null, b.null)
        assert np.array_equal(a.pairs_a, b.pairs_a)
        m1, m2 = margin(x, centred=centred, pairings=p), margin(x, pairings=p, cos=cos)
        assert m1.value == m2.value and np.array_equal(m1.null, m2.null)


def test_one_pair_alone_a_language_and_its_copy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 30, 16))
    x[3] = x[0] + 10.0  # language 3 is language 0 moved by a constant: its "cipher"
    p = random_pairings(30, 12, 30, seed=0)
    res = retrieval(x, centred=True, pairings=p)
    row = res.subset_row(0, 3, p, n_boot=200)
    assert row["value"] == 1.0 and row["n_pairs"] == 2
    assert row["null_p95"] < 0.2 and row["p_value"] == pytest.approx(1 / 31)
    other = res.subset_row(1, 2, p, n_boot=200)
    assert other["value"] < 0.3
