"""Token-level forcing values: checked against a direct per-sentence computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.activations.neurons import Recorder, hook_points
from babelscope.analysis.experts import UnitScores
from babelscope.analysis.steering.values import measure_values
from babelscope.errors import BabelscopeError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from helpers import make_tiny_model

    model, tok = make_tiny_model(tmp_path_factory.mktemp("m"), family="xglm")
    return model.eval(), tok


def _token_rows(model, tok, text: str) -> np.ndarray:
    """(content tokens, all units) of one sentence, run alone (no padding)."""
    points = hook_points(model, "mlp")
    ids = tok(text, add_special_tokens=True)["input_ids"]
    special = set(tok.all_special_ids)
    keep = [i not in special for i in ids]
    with Recorder(points) as rec, torch.no_grad():
        model(input_ids=torch.tensor([ids]))
    whole = torch.cat(
        [rec.get(la).reshape(len(ids), -1) for la in sorted({p.layer for p in points})], 1
    )
    return whole.numpy()[np.array(keep)]


def test_values_match_a_direct_computation(tiny):
    from helpers import TINY_TEXTS

    model, tok = tiny
    background, positives = TINY_TEXTS["eng"][2:], TINY_TEXTS["eng"][:2]
    needed = np.array([0, 5, 64, 127])
    v = measure_values(model, tok, "eng", background, {"c": positives}, {"c": needed},
                       batch_size=3)  # fmt: skip
    bg = [_token_rows(model, tok, t) for t in background]
    tokens = np.concatenate(bg)
    np.testing.assert_allclose(v.off_token, tokens.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v.spread, tokens.std(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(v.off_max, np.mean([b.max(0) for b in bg], 0), rtol=1e-4, atol=1e-5)
    pos = [_token_rows(model, tok, t) for t in positives]
    np.testing.assert_allclose(v.on_token["c"][needed], np.median(np.concatenate(pos), 0)[needed],
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(v.on_max["c"][needed], np.median([p.max(0) for p in pos], 0)[needed],
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    assert np.isnan(v.on_token["c"][1]) and v.n_positive == {"c": 2} and v.n_background == 6
    assert v.layers == [0, 1] and v.widths == [64, 64]


def test_on_off_per_statistic(tiny):
    from helpers import TINY_TEXTS

    model, tok = tiny
    v = measure_values(model, tok, "eng", TINY_TEXTS["eng"][2:], {"c": TINY_TEXTS["eng"][:2]},
                       {"c": np.array([3, 70])})  # fmt: skip
    n = 128
    s = UnitScores(step=0, concept="c", lang="eng", layers=[0, 1], widths=[64, 64],
                   ap=np.zeros(n, np.float32), on_p50=np.full(n, 2.0, np.float32),
                   on_p90=np.zeros(n, np.float32), off_mean=np.full(n, 0.5, np.float32))  # fmt: skip
    flat = np.array([3, 70])
    assert v.on_off(s, "c", "pooled", flat)[0].tolist() == [2.0, 2.0]
    assert v.on_off(s, "c", "pooled", flat)[1].tolist() == [0.5, 0.5]
    on, off = v.on_off(s, "c", "max", flat)
    np.testing.assert_allclose(on, v.on_max["c"][flat], rtol=1e-6)
    np.testing.assert_allclose(off, v.off_max[flat], rtol=1e-6)
    with pytest.raises(BabelscopeError, match="were not measured"):
        v.on_off(s, "c", "token", np.array([4]))
    with pytest.raises(BabelscopeError, match="no background"):
        measure_values(model, tok, "eng", [], {}, {})
