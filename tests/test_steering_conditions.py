"""Experts and baselines as interventions; the positive control every steering must pass.

The control: a tiny model with planted units that write one direction into the residual
stream, a direction the (tied) output embedding reads as one token. Forcing the planted
units harder, or more of them, makes that token dominate what the model writes; the
layer-matched random baseline, given the same shifts in units of each unit's spread,
does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.analysis.experts import UnitScores
from babelscope.analysis.steering.conditions import (
    draw_seed,
    expert_intervention,
    matched_random,
    partner_concepts,
    top_experts,
)
from babelscope.analysis.steering.sampling import sample_tokens
from babelscope.analysis.steering.values import UnitValues, measure_values

WIDTH, PLANTED = 128, list(range(16))  # units 0..15 of the last MLP are planted


def _scores(ap: np.ndarray, widths=(WIDTH, WIDTH)) -> UnitScores:
    n = len(ap)
    return UnitScores(step=0, concept="c", lang="eng", layers=[0, 1], widths=list(widths),
                      ap=ap.astype(np.float32), on_p50=np.ones(n, np.float32),
                      on_p90=np.ones(n, np.float32), off_mean=np.zeros(n, np.float32))  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    import transformers as tf

    from helpers import TINY_TEXTS, make_tokenizer

    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    cfg = tf.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        n_inner=WIDTH, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                        tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(cfg).eval()
    target = 100
    with torch.no_grad():
        # Residual dimension 0 is silent: nothing writes to it ...
        model.transformer.wte.weight[:, 0] = 0.0
        model.transformer.wpe.weight[:, 0] = 0.0
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):  # Conv1D: (in, out)
                proj.weight[:, 0] = 0.0
                proj.bias[0] = 0.0
        # ... but the planted units of the last MLP, and the head reads it as the target.
        model.transformer.h[1].mlp.c_proj.weight[PLANTED, 0] = 1.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[target, 0] = 3.0
    values = measure_values(model, tok, "eng", TINY_TEXTS["eng"], {"c": TINY_TEXTS["eng"][:2]},
                            {"c": np.arange(2 * WIDTH)})  # fmt: skip
    ap = np.random.default_rng(0).random(2 * WIDTH) * 0.5
    ap[[WIDTH + u for u in PLANTED]] = 1.0 - np.arange(len(PLANTED)) * 0.01  # the experts
    return model, tok, target, values, _scores(ap)


def _share(model, tok, target: int, iv) -> float:
    with iv.attach(model) if iv is not None else torch.no_grad():
        rows = sample_tokens(model, [tok.eos_token_id], range(30), max_new_tokens=6,
                             stop_at_eos=False)  # fmt: skip
    return float(np.mean([t == target for r in rows for t in r]))


def _with_strength(values: UnitValues, strength: float) -> UnitValues:
    """The planted units' on value = their off value + ``strength``."""
    on = values.on_token["c"].copy()
    flat = np.array([WIDTH + u for u in PLANTED])
    on[flat] = values.off_token[flat] + strength
    return UnitValues(**{**values.__dict__, "on_token": {"c": on}})


def test_positive_control_dose_response_in_k(planted):
    model, tok, target, values, scores = planted
    v = _with_strength(values, 0.03)
    base = _share(model, tok, target, None)  # the planted units' own activity: ~0.3
    shares = []
    for k in (2, 8, 16):
        iv, z = expert_intervention(scores, v, k, statistic="token", mode="add")
        assert {la for la, _, _ in iv.units} == {1}
        shares.append(_share(model, tok, target, iv))
    assert shares == sorted(shares) and shares[0] < base + 0.15 and shares[-1] >= 0.8
    # The fair baseline at the largest K (all planted units are experts, so none is drawn):
    # the same shifts, in units of each unit's spread, in the same layer.
    rnd = matched_random(scores, v, top_experts(scores, 16), z, statistic="token", mode="add",
                         seed=1)  # fmt: skip
    assert {la for la, _, _ in rnd.units} == {1}
    assert _share(model, tok, target, rnd) < base + 0.1


def test_positive_control_dose_response_in_strength(planted):
    model, tok, target, values, scores = planted
    base = _share(model, tok, target, None)
    add, random = [], []
    for strength in (0.003, 0.03, 0.3):
        v = _with_strength(values, strength)
        iv, z = expert_intervention(scores, v, 16, statistic="token", mode="add")
        add.append(_share(model, tok, target, iv))
        rnd = matched_random(scores, v, top_experts(scores, 16), z, statistic="token",
                             mode="add", seed=2)  # fmt: skip
        random.append(_share(model, tok, target, rnd))
    assert add == sorted(add) and add[0] < base + 0.15 and add[-1] >= 0.9
    assert max(random) < base + 0.1
    set_iv, _ = expert_intervention(scores, _with_strength(values, 0.3), 16, statistic="token",
                                    mode="set")  # fmt: skip
    assert _share(model, tok, target, set_iv) >= 0.9


def test_matched_random_layers_and_shifts(planted):
    _, _, _, values, scores = planted
    ap = np.zeros(2 * WIDTH)
    ap[[3, 5, WIDTH + 1, WIDTH + 2, WIDTH + 9]] = 1.0  # two experts in layer 0, three in 1
    s = _scores(ap)
    flat = top_experts(s, 5)
    iv, z = expert_intervention(s, values, 5, statistic="token", mode="add")
    rnd = matched_random(s, values, flat, z, statistic="token", mode="add", seed=3, draw=2)
    layers = sorted(la for la, _, _ in rnd.units)
    assert layers == [0, 0, 1, 1, 1] and rnd.meta["unmatched"] == 0 and rnd.meta["draw"] == 2
    assert not {(la, u) for la, u, _ in rnd.units} & {(la, u) for la, u, _ in iv.units}
    # each random unit moves by an expert's z (of its layer) times its own spread
    for la, u, shift in rnd.units:
        sd = values.spread[s.flat(la, u)]
        assert any(np.isclose(shift, zi * sd, rtol=1e-5) for zi in z)
    # set mode: the random unit's own off value plus the shift
    set_iv = matched_random(s, values, flat, z, statistic="token", mode="set", seed=3)
    for (la, u, v_set), (_, _, v_add) in zip(set_iv.units, rnd.units, strict=True):
        assert v_set == pytest.approx(values.off_token[s.flat(la, u)] + v_add, rel=1e-5)
    other = matched_random(s, values, flat, z, statistic="token", mode="add", seed=4)
    assert other.units != rnd.units  # draws differ


def test_matched_random_fills_a_full_layer_from_others(planted):
    _, _, _, values, _ = planted
    ap = np.zeros(2 * WIDTH)
    ap[:WIDTH] = 1.0  # every unit of layer 0 is an expert: nothing left there to match
    ap[WIDTH] = 0.5
    s = _scores(ap)
    flat = top_experts(s, WIDTH)
    _, z = expert_intervention(s, values, WIDTH, statistic="token", mode="add")
    rnd = matched_random(s, values, flat, z, statistic="token", mode="add", seed=0)
    assert rnd.meta["unmatched"] == WIDTH and {la for la, _, _ in rnd.units} == {1}


def test_draw_seeds_and_partners():
    seeds = {draw_seed(0, 8, "water", k, d) for k in (10, 100) for d in range(5)}
    assert len(seeds) == 10 and draw_seed(0, 8, "water", 10, 0) == draw_seed(0, 8, "water", 10, 0)
    assert partner_concepts(["a", "b", "c"], ["c", "b", "a"]) == {"a": "b", "b": "c", "c": "a"}
    assert partner_concepts(["a"], ["a", "z"]) == {"a": "z"}
    assert partner_concepts(["a"], ["a"]) == {"a": None}
