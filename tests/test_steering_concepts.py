"""Choosing concepts to steer (held-out strength when the shards carry half APs) and the
sentences forcing values are measured on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.steering import SteerSettings
from babelscope.analysis.steering.concepts import choose_concepts, concept_strengths, pool_texts
from babelscope.errors import BabelscopeError


def _shard(run, ap, halves=None):
    from babelscope.analysis import experts as ex

    c, n = ap.shape
    arrays = {
        "ap": ap,
        "on_p50": np.ones((c, n)),
        "on_p90": np.ones((c, n)),
        "off_mean": np.zeros((c, n)),
    }
    extra = {"ap_half0": halves[0], "ap_half1": halves[1]} if halves is not None else None
    ex.save_shard(run, 4, "spa", arrays, concepts=["a", "b"], layers=[0], widths=[n],
                  n_pos=np.array([5, 5]), n_neg=np.array([9, 9]), extra=extra)  # fmt: skip


def test_strength_in_sample_and_held_out(tmp_path):
    n = 40
    ap = np.full((2, n), 0.1)
    ap[0, :10] = 0.9  # in sample "a" looks strongest
    ap[1, :10] = 0.5
    _shard(tmp_path, ap)
    s, held = concept_strengths(tmp_path, 4, "spa")
    assert not held and s["a"] == pytest.approx(0.9) and s["b"] == pytest.approx(0.5)
    # On halves: a's best units on one half are noise on the other; b's hold up.
    h0, h1 = np.full((2, n), 0.1), np.full((2, n), 0.1)
    h0[0, :10], h1[0, 10:20] = 0.9, 0.9
    h0[1, :10], h1[1, :10] = 0.5, 0.5
    _shard(tmp_path, ap, (h0, h1))
    s, held = concept_strengths(tmp_path, 4, "spa")
    assert held and s["a"] == pytest.approx(0.1) and s["b"] == pytest.approx(0.5)
    index = pd.DataFrame({"step": [4, 4], "concept": ["a", "b"], "lang": ["spa", "spa"]})
    chosen, ranked, held = choose_concepts(index, SteerSettings(max_concepts=1), [4], tmp_path)
    assert chosen == ["b"] and ranked == ["b", "a"] and held


def test_choose_concepts_errors(tmp_path):
    index = pd.DataFrame({"step": [4], "concept": ["a"], "lang": ["spa"]})
    with pytest.raises(BabelscopeError, match="source language 'deu'"):
        choose_concepts(index, SteerSettings(source_lang="deu"), [4])
    with pytest.raises(BabelscopeError, match="concept 'z' in 'spa'"):
        choose_concepts(index, SteerSettings(concepts=["z"]), [4])
    with pytest.raises(BabelscopeError, match=r"step\(s\) \[8\]"):
        choose_concepts(index, SteerSettings(concepts=["a"]), [4, 8])


def test_pool_texts(tmp_path):
    from test_steering_stage import write_data

    data = write_data(tmp_path)
    pos, bg = pool_texts(data, "spa", ["water", "music"], n_background=3)
    assert pos["water"] == ["El agua del río está fría.", "Mi familia vive cerca del mar."]
    assert len(pos["music"]) == 1 and len(bg) == 3
    assert not set(bg) & set(pos["water"] + pos["music"])
    assert pool_texts(data, "spa", ["water", "music"], n_background=3) == (pos, bg)  # fixed sample
