"""The family table: every family's tiny model passes the width check; errors are clear."""

from __future__ import annotations

import pytest
import torch

from babelscope.activations.families import FAMILIES, FamilySpec, check_widths, family_of
from babelscope.errors import BabelscopeError
from helpers_models import TINY_FAMILIES, tiny_family_model


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_family_is_found_and_checked(family):
    model = tiny_family_model(family)
    spec = family_of(model)
    assert spec is FAMILIES[model.config.model_type]
    assert spec.num_layers(model.config) == 3


def test_table_covers_the_issue_families():
    want = {"gpt2", "bloom", "xglm", "opt", "gpt_neox", "llama", "mistral", "qwen2", "qwen3",
            "gemma", "gemma2", "gemma3", "gemma3_text", "olmo", "olmo2"}  # fmt: skip
    assert want <= set(FAMILIES)


def test_unknown_family_names_module_types_and_the_fix():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "oddformer"})()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(BabelscopeError) as e:
        family_of(Odd())
    msg = str(e.value)
    assert "oddformer" in msg and "ModuleList" in msg and "FAMILIES" in msg and "\n" not in msg


def test_wrong_table_line_is_caught_by_the_width_check():
    model = tiny_family_model("llama")
    swapped = FamilySpec(
        "llama", layers="model.layers", down_proj="mlp.up_proj", up_proj="mlp.down_proj"
    )
    with pytest.raises(BabelscopeError, match="width"):
        check_widths(model, swapped)
    missing = FamilySpec(
        "llama", layers="model.layers", down_proj="mlp.nope", up_proj="mlp.up_proj"
    )
    with pytest.raises(BabelscopeError, match="no module 'mlp.nope'"):
        check_widths(model, missing)
    nolayers = FamilySpec(
        "llama", layers="model.blocks", down_proj="mlp.down_proj", up_proj="mlp.up_proj"
    )
    with pytest.raises(BabelscopeError, match="no block list"):
        check_widths(model, nolayers)


def test_gpt2_default_inner_width_is_four_times_hidden():
    import transformers as tf

    model = tf.GPT2LMHeadModel(
        tf.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    )
    assert family_of(model).intermediate_size(model.config) == 64


def test_known_bypass_configurations_are_refused_up_front(monkeypatch):
    from babelscope.activations.families import bypass_hint, check_not_bypassed

    names = ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.up_proj"]
    llama = tiny_family_model("llama")
    spec = family_of(llama)
    check_not_bypassed(llama, spec, names)  # pretraining_tp = 1: nothing to refuse
    llama.config.pretraining_tp = 4
    # Current transformers' LlamaMLP no longer slices its weights: still hookable, but the
    # hint for a hook that does not run names the setting.
    check_not_bypassed(llama, spec, names)
    assert "pretraining_tp = 4" in bypass_hint(llama, spec)
    # An installed LlamaMLP whose forward reads pretraining_tp (older transformers) is refused.
    mlp_cls = type(llama.model.layers[0].mlp)
    original = mlp_cls.forward

    def forward(self, x):  # stands for the old code: `if self.config.pretraining_tp > 1: ...`
        return original(self, x) if self.config.pretraining_tp else x

    monkeypatch.setattr(mlp_cls, "forward", forward)
    with pytest.raises(BabelscopeError, match=r"cannot hook model\.layers\.0\.mlp\.down_proj "
                       r"\(and 1 more\).*Llama with pretraining_tp > 1.*pretraining_tp=1"):  # fmt: skip
        check_not_bypassed(llama, spec, names)
    check_not_bypassed(llama, spec, ["model.layers.0.input_layernorm"])  # not a bypassed module
    # BLOOM: tensor-parallel slicing only with slow_but_exact
    bloom = tiny_family_model("bloom")
    bloom.config.pretraining_tp = 2
    dense = ["transformer.h.1.mlp.dense_4h_to_h"]
    check_not_bypassed(bloom, family_of(bloom), dense)
    bloom.config.slow_but_exact = True
    with pytest.raises(BabelscopeError, match="slow_but_exact=False / pretraining_tp=1"):
        check_not_bypassed(bloom, family_of(bloom), dense)
