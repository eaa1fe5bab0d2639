"""Extraction: shapes for every family, padding never counts, hooks agree with
output_hidden_states, token sampling, truncation counting, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.activations.extract import context_length, extract_pooled, extract_token_samples
from babelscope.activations.neurons import hook_points, layer_widths
from babelscope.errors import BabelscopeError
from helpers import TINY_TEXTS, make_tokenizer
from helpers_models import HIDDEN, LAYERS, TINY_FAMILIES, tiny_family_model

TEXTS = [s for v in TINY_TEXTS.values() for s in v][::2]  # 16 texts of mixed lengths and scripts


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def bos_tok(tmp_path_factory):
    """The tiny tokenizer with a BOS prepended to every text (like XGLM's, Llama's)."""
    from tokenizers import processors

    t = make_tokenizer(tmp_path_factory.mktemp("bostok"))
    bos = t.convert_tokens_to_ids("<s>")
    t.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    return t


def _close(a, b, atol=1e-5):
    assert a.layers == b.layers
    for layer in a.layers:
        np.testing.assert_allclose(a.get(layer), b.get(layer), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_family_extracts_with_expected_shapes(family, tok):
    model = tiny_family_model(family, vocab_size=len(tok))
    for kind in ("mlp", "mlp_pre", "residual", "linear_all"):
        pooled = extract_pooled(model, tok, TEXTS[:5], kind=kind, batch_size=2)
        widths = layer_widths(hook_points(model, kind))
        n_layers = LAYERS + 1 if kind == "residual" else LAYERS
        assert pooled.layers == list(range(n_layers)) and pooled.widths == widths
        for layer in pooled.layers:
            arr = pooled.get(layer)
            assert (
                arr.shape == (5, widths[layer])
                and arr.dtype == np.float32
                and np.isfinite(arr).all()
            )
    samples = extract_token_samples(model, tok, TEXTS[:5], tokens_per_text=2, batch_size=2)
    assert samples.get(0).shape == (10, HIDDEN) and samples.sentence_index.tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


@pytest.mark.parametrize("family", ["gpt2", "bloom", "xglm", "opt", "llama", "gemma2"])
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_mixed_length_batch_equals_one_by_one_left_and_right(family, pooling, bos_tok):
    model = tiny_family_model(family, vocab_size=len(bos_tok))
    one = extract_pooled(model, bos_tok, TEXTS, kind="mlp", pooling=pooling, batch_size=1)
    right = extract_pooled(model, bos_tok, TEXTS, kind="mlp", pooling=pooling, batch_size=32)
    left = extract_pooled(
        model, bos_tok, TEXTS, kind="mlp", pooling=pooling, batch_size=5, padding_side="left"
    )
    _close(right, one)
    _close(left, one)


@pytest.mark.parametrize("family", ["gpt2", "xglm", "llama", "opt_proj"])
def test_pooled_residual_equals_pooled_output_hidden_states(family, bos_tok):
    """Through the whole extraction path: mean over content tokens of hidden_states[l]."""
    model = tiny_family_model(family, vocab_size=len(bos_tok))
    got = extract_pooled(model, bos_tok, TEXTS[:6], kind="residual", pooling="mean", batch_size=4)
    for i, text in enumerate(TEXTS[:6]):
        ids = bos_tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer, h in enumerate(hs):
            want = h[0, 1:].mean(0).numpy()  # position 0 is the BOS: not pooled
            np.testing.assert_allclose(got.get(layer)[i], want, rtol=1e-5, atol=1e-5)


def test_token_samples_equal_hidden_states_at_their_positions(bos_tok):
    model = tiny_family_model("llama", vocab_size=len(bos_tok))
    s = extract_token_samples(model, bos_tok, TEXTS[:4], tokens_per_text=3, seed=1, batch_size=3)
    assert s.layers == list(range(LAYERS + 1)) and len(s.sentence_index) == 12
    assert (s.position >= 1).all(), "the BOS is never sampled"
    for t in range(len(s.position)):
        ids = bos_tok(TEXTS[s.sentence_index[t]], return_tensors="pt")["input_ids"]
        assert ids[0, s.position[t]] == s.token_id[t]
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in s.layers:
            np.testing.assert_allclose(
                s.get(layer)[t], hs[layer][0, s.position[t]].numpy(), rtol=1e-5, atol=1e-5
            )


def test_token_sampling_is_seeded_per_text_and_independent_of_batching(tok):
    model = tiny_family_model("gpt2", vocab_size=len(tok))
    a = extract_token_samples(model, tok, TEXTS, tokens_per_text=2, seed=0, batch_size=16)
    b = extract_token_samples(
        model, tok, TEXTS, tokens_per_text=2, seed=0, batch_size=3, padding_side="left"
    )
    c = extract_token_samples(model, tok, TEXTS, tokens_per_text=2, seed=1, batch_size=16)
    tail = extract_token_samples(model, tok, TEXTS[8:], tokens_per_text=2, seed=0, index_offset=8)
    assert (a.position == b.position).all() and not (a.position == c.position).all()
    _close(a, b)
    assert (tail.position == a.position[a.sentence_index >= 8]).all()
    every = extract_token_samples(model, tok, TEXTS[:3], layers=[1])
    assert every.layers == [1] and len(every.position) == sum(
        len(tok(t)["input_ids"]) for t in TEXTS[:3]
    )


def test_layer_subset_equals_the_full_extraction(tok):
    model = tiny_family_model("xglm", vocab_size=len(tok))
    full = extract_pooled(model, tok, TEXTS[:6], kind="residual")
    part = extract_pooled(model, tok, TEXTS[:6], kind="residual", layers=[0, 2])
    assert part.layers == [0, 2]
    for layer in part.layers:
        np.testing.assert_array_equal(part.get(layer), full.get(layer))
    assert part.flat().shape == (6, 2 * HIDDEN)


def test_long_texts_are_truncated_and_counted(tok):
    model = tiny_family_model("gpt2", vocab_size=len(tok))  # 64 positions
    assert context_length(model, tok) == 64
    long = " ".join(TEXTS)  # far more than 64 tokens
    pooled = extract_pooled(model, tok, [long, TEXTS[0], long], kind="mlp")
    assert pooled.n_truncated == 2 and pooled.get(0).shape[0] == 3
    short = extract_pooled(model, tok, [long], max_length=5)
    assert short.n_truncated == 1 and short.n_tokens == 5


def test_half_precision_gives_float32_results(tok):
    model = tiny_family_model("llama", vocab_size=len(tok)).to(torch.bfloat16)
    pooled = extract_pooled(model, tok, TEXTS[:3], device="cpu")
    assert pooled.get(0).dtype == np.float32 and np.isfinite(pooled.get(0)).all()
    ref = extract_pooled(tiny_family_model("llama", vocab_size=len(tok)), tok, TEXTS[:3])
    np.testing.assert_allclose(pooled.get(0), ref.get(0), atol=0.05, rtol=0.05)


def test_bad_input_gives_one_line_errors(tok):
    model = tiny_family_model("gpt2", vocab_size=len(tok))
    cases = [
        (dict(pooling="median"), "unknown pooling"),
        (dict(kind="attention"), "unknown unit kind"),
        (dict(layers=[7]), "do not exist"),
        (dict(batch_size=0), "batch_size"),
    ]
    for kwargs, match in cases:
        with pytest.raises(BabelscopeError, match=match):
            extract_pooled(model, tok, TEXTS[:2], **kwargs)
    with pytest.raises(BabelscopeError, match="no tokens"):
        extract_pooled(model, tok, ["fine", ""])
    with pytest.raises(BabelscopeError, match="must be strings"):
        extract_pooled(model, tok, ["fine", None])  # type: ignore[list-item]
    with pytest.raises(BabelscopeError, match="tokens_per_text"):
        extract_token_samples(model, tok, TEXTS[:2], tokens_per_text=0)
    empty = extract_pooled(model, tok, [])
    assert empty.get(0).shape == (0, model.config.n_inner)
