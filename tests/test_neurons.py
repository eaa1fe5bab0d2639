"""Hook points per unit kind: widths, the residual stream equals output_hidden_states, and
the hooking primitives read, edit and clean up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.activations.neurons import (
    Recorder,
    edited,
    flat_to_unit,
    hook_points,
    hooked,
    layer_widths,
    layers_of,
    unit_offsets,
)
from babelscope.errors import BabelscopeError
from helpers_models import HIDDEN, INTER, LAYERS, TINY_FAMILIES, tiny_family_model


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, 300, (2, 6), generator=g), torch.ones(2, 6, dtype=torch.long)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_residual_hooks_equal_output_hidden_states(family):
    model = tiny_family_model(family)
    ids, mask = _inputs()
    points = hook_points(model, "residual")
    assert [p.layer for p in points] == list(range(LAYERS + 1))
    with Recorder(points) as rec, torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == len(points)
    for layer, hs in enumerate(out.hidden_states):
        torch.testing.assert_close(rec.get(layer), hs, rtol=0, atol=0)


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("kind", ["mlp", "mlp_pre", "linear_all"])
def test_widths_match_recorded_values(family, kind):
    model = tiny_family_model(family)
    ids, mask = _inputs()
    points = hook_points(model, kind)
    with Recorder(points) as rec, torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for k, p in enumerate(points):
        # OPT flattens (batch, seq) before its MLP: the last axis is always the units.
        assert rec.values[k].reshape(2, 6, -1).shape == (2, 6, p.width), p.name
    if kind != "linear_all":
        want = 4 * HIDDEN if family == "bloom" else INTER  # BLOOM's MLP is always 4x
        assert [p.width for p in points] == [want] * LAYERS


def test_mlp_reads_the_down_projection_input():
    model = tiny_family_model("llama")
    points = hook_points(model, "mlp")
    assert points[1].name == "model.layers.1.mlp.down_proj" and points[1].reads == "input"
    assert hook_points(model, "mlp_pre")[0].name == "model.layers.0.mlp.up_proj"


def test_layer_filter_and_bad_layer():
    model = tiny_family_model("gpt2")
    assert [p.layer for p in hook_points(model, "residual", layers=[0, 3])] == [0, 3]
    with pytest.raises(BabelscopeError, match="do not exist"):
        hook_points(model, "mlp", layers=[3])
    with pytest.raises(BabelscopeError, match="unknown unit kind"):
        hook_points(model, "attention")  # type: ignore[arg-type]


def test_offsets_and_flat_index_round_trip():
    model = tiny_family_model("xglm")
    points = hook_points(model, "linear_all")
    widths = layer_widths(points)
    offsets = unit_offsets(points)
    assert offsets[-1] == sum(widths.values()) and len(offsets) == len(layers_of(points)) + 1
    flat = np.array([0, offsets[1] - 1, offsets[1], offsets[-1] - 1])
    layer, index = flat_to_unit(points, flat)
    assert layer.tolist() == [0, 0, 1, LAYERS - 1]
    assert (offsets[layer] + index == flat).all()
    with pytest.raises(BabelscopeError):
        flat_to_unit(points, offsets[-1])


def test_edit_changes_the_output_and_hooks_go_away_even_on_error():
    model = tiny_family_model("gpt2")
    ids, mask = _inputs()
    point = hook_points(model, "mlp")[0]
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with edited(point, lambda v: torch.zeros_like(v)):
            changed = model(input_ids=ids).logits
        assert not torch.allclose(base, changed)

        class Stop(Exception):
            pass

        def stop(_p, _v):
            raise Stop

        with pytest.raises(Stop), hooked(hook_points(model, "residual"), stop):
            model(input_ids=ids)
        assert not point.module._forward_pre_hooks and not point.module._forward_hooks
        torch.testing.assert_close(model(input_ids=ids).logits, base, rtol=0, atol=0)


def test_edit_of_a_keyword_input_and_of_a_model_output():
    model = tiny_family_model("llama")
    ids, _ = _inputs()
    res = hook_points(model, "residual")
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with edited(res[0], lambda v: v * 0):  # block 0 input (passed by keyword or position)
            assert not torch.allclose(model(input_ids=ids).logits, base)
        with edited(res[-1], lambda v: v * 0):  # the base model's output feeds the LM head
            torch.testing.assert_close(model(input_ids=ids).logits, torch.zeros_like(base))
