"""The logit lens: through every family's final norm and head, token languages, summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.activations.extract import extract_token_samples
from babelscope.activations.families import FAMILIES, family_of, get_module, output_head
from babelscope.analysis.representations.logit_lens import (
    SHARED,
    UNSEEN,
    TokenLanguages,
    lens_mass,
    lens_matrix,
    lens_positions,
    lens_summary,
    sentence_means,
    token_languages,
)
from babelscope.errors import BabelscopeError
from helpers import TINY_TEXTS, make_tokenizer
from helpers_models import TINY_FAMILIES, tiny_family_model


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def test_every_family_names_its_final_norm_and_head():
    assert all(spec.final_norm for spec in FAMILIES.values())


def _identity_last_block(model):
    """Make the last block return its input: the model's output is then final_norm(layer L-1)."""
    spec = family_of(model)
    block = get_module(model, spec.layers)[-1]

    def hook(module, args, kwargs, output):
        h = args[0] if args and torch.is_tensor(args[0]) else kwargs["hidden_states"]
        return (h, *output[1:]) if isinstance(output, tuple) else h

    return block.register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_lens_reproduces_the_models_own_distribution(family, tok):
    model = tiny_family_model(family, vocab_size=len(tok))
    n_layers = family_of(model).num_layers(model.config)
    texts = ["The water in the river is cold.", "河里的水很冷。"]
    handle = _identity_last_block(model)
    try:
        samples = extract_token_samples(model, tok, texts, kind="residual")
        ids = tok(texts[0], return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            want = torch.softmax(model(ids).logits[0].float(), -1)
    finally:
        handle.remove()
    head = output_head(model)
    rows = samples.sentence_index == 0
    pos = samples.position[rows]
    for layer, final in ((n_layers, True), (n_layers - 1, False)):
        # Layer L is the base model's output; with the last block the identity, layer L-1
        # through the final norm and head is the same distribution.
        h = torch.from_numpy(samples.get(layer)[rows])
        with torch.inference_mode():
            got = torch.softmax(head.logits(h, final=final).float(), -1)
        assert torch.allclose(got, want[pos], atol=1e-5), (family, layer)


def test_lens_mass_groups_the_distribution_by_class(tok):
    model = tiny_family_model("llama", vocab_size=len(tok))
    classes = token_languages(tok, TINY_TEXTS, len(tok), min_count=1)
    samples = extract_token_samples(model, tok, TINY_TEXTS["spa"][:3], kind="residual")
    states = {layer: samples.get(layer) for layer in samples.layers}
    mass = lens_mass(output_head(model), states, 3, classes, chunk=5)
    for m in mass.values():
        assert m.shape == (len(samples.sentence_index), len(classes.classes))
        assert np.allclose(m.sum(axis=1), 1, atol=1e-5)
    h = torch.from_numpy(states[3])
    with torch.inference_mode():
        p = torch.softmax(output_head(model).logits(h, final=True), -1).numpy()
    zho = classes.classes.index("zho")
    assert np.allclose(mass[3][:, zho], p[:, classes.label == zho].sum(1), atol=1e-5)


def test_token_languages_rule(tok):
    classes = token_languages(tok, TINY_TEXTS, len(tok), min_count=2)
    assert classes.classes[-2:] == [SHARED, UNSEEN]
    label = dict(zip(range(len(tok)), classes.label, strict=True))
    names = classes.classes
    # special tokens and tokens of no text are unseen
    assert all(names[label[t]] == UNSEEN for t in tok.all_special_ids)
    # a Chinese-only token belongs to zho; the full stop is shared by eng, spa and deu
    zh = tok("河里的水很冷", add_special_tokens=False)["input_ids"]
    assert any(names[label[t]] == "zho" for t in zh)
    dot = tok(".", add_special_tokens=False)["input_ids"][0]
    assert names[label[dot]] == SHARED
    assert classes.vocab_share().sum() == pytest.approx(1.0)
    with pytest.raises(BabelscopeError, match="dominance"):
        token_languages(tok, TINY_TEXTS, len(tok), dominance=0.4)
    with pytest.raises(BabelscopeError, match="no text"):
        token_languages(tok, {"eng": []}, len(tok))


def _classes(n_lang=4, vocab=40):
    label = np.repeat(np.arange(n_lang + 2), vocab // (n_lang + 2))
    return TokenLanguages(
        [f"l{i}" for i in range(n_lang)], label, np.zeros((n_lang, len(label))), 1, 0.8
    )


def test_lens_summary_own_language_against_its_null():
    classes = _classes()
    rng = np.random.default_rng(0)
    lang = np.repeat(np.arange(4), 25)
    mass = rng.dirichlet(np.ones(6), size=100) * 0.3
    mass[np.arange(100), lang] += 0.7  # every input puts most mass on its own language
    rows = {r["measure"]: r for r in lens_summary(mass, lang, classes, "l0", n_permutations=99)}
    own = rows["lens_own"]
    assert own["value"] > 0.7 > own["null_p95"]
    assert own["p_value"] == pytest.approx(1 / 100)
    assert own["chance"] == pytest.approx(1 / 6, abs=0.01)
    assert own["n_items"] == 75  # pivot (l0) inputs are left out
    piv = rows["lens_pivot"]
    assert piv["value"] < 0.2 and piv["null_mean"] > 0
    assert set(rows) == {"lens_own", "lens_pivot", "lens_other", "lens_shared", "lens_unseen"}
    total = sum(
        rows[m]["value"]
        for m in ("lens_own", "lens_pivot", "lens_other", "lens_shared", "lens_unseen")
    )
    assert total == pytest.approx(1.0)
    with pytest.raises(BabelscopeError, match="pivot"):
        lens_summary(mass, lang, classes, "xx")
    matrix = lens_matrix(mass, lang, classes)
    assert len(matrix) == 4 * 6 and {m["n"] for m in matrix} == {25}


def test_positions_and_sentence_means():
    sentence = np.array([0, 0, 0, 1, 2, 2, 2, 2])
    picked = lens_positions(sentence, 2, seed=0)
    assert list(np.bincount(sentence[picked])) == [2, 1, 2]
    assert np.array_equal(picked, lens_positions(sentence, 2, seed=0))
    assert len(lens_positions(sentence, None)) == 8
    values = np.arange(16, dtype=float).reshape(8, 2)
    means = sentence_means(values, sentence, 4)
    assert np.allclose(means[0], values[:3].mean(0)) and np.allclose(means[2], values[4:].mean(0))
    assert np.isnan(means[3]).all()
