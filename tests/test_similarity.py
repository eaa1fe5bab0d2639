"""Linear CKA and the translation margin: known answers, the shuffled-pairing null."""

from __future__ import annotations

import numpy as np
import pytest

from babelscope.analysis.representations.similarity import cka, linear_cka, margin
from test_retrieval import planted


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(a, a) == pytest.approx(1.0)
    # rotation, isotropic scaling and a constant offset leave CKA at 1
    assert linear_cka(a, 3.0 * a @ q + 5.0) == pytest.approx(1.0)
    b = rng.normal(size=(30, 8))
    assert linear_cka(a, b) < 0.6
    assert np.isnan(linear_cka(a, np.ones((30, 8))))


def test_cka_recovers_planted_structure_above_its_null():
    x = planted(n_lang=5, n=40, d=16, noise=0.2)
    res = cka(x, n_permutations=50)
    row = res.row()
    assert res.value > 0.9  # the offset does not matter to CKA
    assert row["null_p95"] < 0.5 < res.value
    assert row["p_value"] == pytest.approx(1 / 51)
    assert res.n_pairs == 10 and res.ci_low <= res.value <= res.ci_high


def test_cka_without_shared_content_sits_on_its_null():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 30, 60))  # fewer items than dimensions: CKA is biased up
    res = cka(x, n_permutations=100)
    row = res.row()
    assert res.value > 0.3  # the bias is large ...
    assert abs(res.value - row["null_mean"]) < 0.02  # ... and the null carries it
    assert row["p_value"] > 0.01


def test_margin_raw_small_centred_large_and_null_zero():
    x = planted(n_lang=4, n=30, d=32)
    raw = margin(x, n_permutations=50)
    cen = margin(x, centred=True, n_permutations=50)
    assert cen.value > 0.8 and cen.value > 10 * abs(raw.value)
    assert abs(cen.row()["null_mean"]) < 0.05
    assert cen.row()["p_value"] == pytest.approx(1 / 51)
    rng = np.random.default_rng(4)
    none = margin(rng.normal(size=(4, 30, 32)), centred=True, n_permutations=100)
    assert abs(none.value) < 0.03 and none.row()["p_value"] > 0.01
