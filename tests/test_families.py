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
