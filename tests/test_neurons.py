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


# ---- hooks that must run ---------------------------------------------------------------


def _bypassed_xglm(monkeypatch):
    from transformers.models.xglm.modeling_xglm import XGLMDecoderLayer

    from helpers_models import bypass

    model = tiny_family_model("xglm")
    ids, _ = _inputs()
    with torch.no_grad():
        base = model(input_ids=ids).logits
    bypass(monkeypatch, XGLMDecoderLayer, "fc2")
    with torch.no_grad():  # the bypass changes no number: only the hooks see a difference
        torch.testing.assert_close(model(input_ids=ids).logits, base)
    return model, ids


def test_a_point_never_called_is_an_error_not_zeros(monkeypatch):
    model, ids = _bypassed_xglm(monkeypatch)
    points = hook_points(model, "mlp")
    msg = r"hook point model\.layers\.0\.fc2 was never called.*\(and 2 more.*without calling the module"
    with pytest.raises(BabelscopeError, match=msg), Recorder(points), torch.no_grad():
        model(input_ids=ids)
    assert not points[0].module._forward_pre_hooks  # hooks removed all the same
    # the counts behind it: the bypassed points ran 0 times, the others once per pass
    both = points + hook_points(model, "mlp_pre")
    with hooked(both, lambda p, v: None, require=False) as calls, torch.no_grad():
        model(input_ids=ids)
        model(input_ids=ids)
    assert calls.counts == [0, 0, 0, 2, 2, 2]
    assert [p.name for p in calls.missing()] == [p.name for p in points]
    monkeypatch.undo()  # the same model, calling its modules again: no error
    with Recorder(points) as rec, torch.no_grad():
        model(input_ids=ids)
    assert rec.values[0].abs().sum() > 0


def test_an_error_inside_the_block_is_not_masked(monkeypatch):
    model, ids = _bypassed_xglm(monkeypatch)
    with (
        pytest.raises(KeyError, match="mine"),
        hooked(hook_points(model, "mlp"), lambda p, v: None),
    ):
        raise KeyError("mine")


def test_llama_mlp_computing_down_proj_with_f_linear(monkeypatch):
    """The brief's case: an MLP forward that uses the down projection's weight directly."""
    import torch.nn.functional as F
    from transformers.models.llama.modeling_llama import LlamaMLP

    from babelscope.activations.extract import extract_pooled
    from helpers import make_tokenizer

    def forward(self, x):
        return F.linear(self.act_fn(self.gate_proj(x)) * self.up_proj(x), self.down_proj.weight)

    model = tiny_family_model("llama")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        tok = make_tokenizer(Path(d))
    texts = ["The water is cold.", "Das Wasser ist kalt."]
    good = extract_pooled(model, tok, texts, kind="mlp")
    assert all(np.abs(good.get(layer)).sum() > 0 for layer in good.layers)
    monkeypatch.setattr(LlamaMLP, "forward", forward)
    with pytest.raises(BabelscopeError, match=r"model\.layers\.0\.mlp\.down_proj was never called"):
        extract_pooled(model, tok, texts, kind="mlp")
    assert extract_pooled(model, tok, texts, kind="mlp_pre").get(0).any()  # up_proj still runs


def test_bloom_slow_but_exact_refused_up_front_and_caught_at_run_time(monkeypatch):
    import transformers as tf

    from babelscope.activations import families
    from helpers_models import family_config

    def bloom(slow_but_exact: bool):
        cfg = family_config("bloom")
        cfg.pretraining_tp, cfg.slow_but_exact = 2, slow_but_exact
        torch.manual_seed(0)
        return tf.AutoModelForCausalLM.from_config(cfg).eval()

    model = bloom(True)
    with pytest.raises(BabelscopeError, match=r"cannot hook transformer\.h\.0\.mlp\.dense_4h_to_h"
                       r".*BLOOM with pretraining_tp > 1 and slow_but_exact=True.*slow_but_exact=False"):  # fmt: skip
        hook_points(model, "mlp")
    assert len(hook_points(model, "mlp_pre")) == LAYERS  # dense_h_to_4h is still called
    # Without the table's knowledge, the call count catches the real BLOOM code path.
    spec = families.FAMILIES["bloom"]
    monkeypatch.setitem(families.FAMILIES, "bloom", families.FamilySpec(
        **{**spec.__dict__, "bypass": None}))  # fmt: skip
    ids, _ = _inputs()
    msg = r"transformer\.h\.0\.mlp\.dense_4h_to_h was never called.*pretraining_tp = 2"
    with pytest.raises(BabelscopeError, match=msg), Recorder(hook_points(model, "mlp")):
        model(input_ids=ids)
    fixed = bloom(False)  # the documented fix: same weights, the modules are called
    with Recorder(hook_points(fixed, "mlp")), torch.no_grad():
        torch.testing.assert_close(fixed(input_ids=ids).logits, model(input_ids=ids).logits)


def test_bypassed_extraction_writes_no_cache_and_no_experts_shard(tmp_path, monkeypatch):
    from babelscope.activations.cache import cached_pooled
    from babelscope.analysis.experts import ExpertSettings, run_experts
    from babelscope.checkpoints.series import load_checkpoint, resolve_series
    from helpers import make_tiny_series
    from test_experts import _data_dir

    series = resolve_series(str(make_tiny_series(tmp_path / "series", steps=(0,))))
    data = _data_dir(tmp_path)
    _bypassed_xglm(monkeypatch)
    loaded = load_checkpoint(series.get(0))
    with pytest.raises(BabelscopeError, match=r"model\.layers\.0\.fc2 was never called"):
        cached_pooled(loaded, ["the water", "la música"], data_key="k", cache_dir=tmp_path / "c1")
    assert not [p for p in (tmp_path / "c1").rglob("*") if p.is_file()]
    out = tmp_path / "run"
    with pytest.raises(BabelscopeError, match=r"model\.layers\.0\.fc2 was never called"):
        run_experts(series, data, out, ExpertSettings(min_positives=1), cache_dir=tmp_path / "c2")
    assert not [p for p in (tmp_path / "c2").rglob("*") if p.is_file()]
    assert not list(out.rglob("*.npz")) and not (out / "results" / "experts.parquet").exists()
