"""Seeded sampling for forced generation: one seed one text, KV cache, batching, EOS, fluency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.activations.neurons import hook_points
from babelscope.analysis.intervention import Intervention
from babelscope.analysis.steering import (
    generate_texts,
    sample_next,
    sample_tokens,
    start_ids,
    token_losses,
)
from babelscope.errors import BabelscopeError


@pytest.fixture(scope="module", params=["gpt2", "xglm"])
def tiny(request, tmp_path_factory):
    from helpers import make_tiny_model

    model, tok = make_tiny_model(tmp_path_factory.mktemp(request.param), family=request.param)
    return model.eval(), tok


def _forcing(model) -> Intervention:
    width = hook_points(model, "mlp")[0].width
    return Intervention([(la, u, 4.0) for la in (0, 1) for u in range(0, width, 5)])


def test_same_tokens_with_and_without_cache(tiny):
    model, tok = tiny
    p = start_ids(tok)
    kw = dict(max_new_tokens=20, eos_token_id=None)
    assert sample_tokens(model, p, range(6), use_cache=True, **kw) == sample_tokens(
        model, p, range(6), use_cache=False, **kw
    )
    with _forcing(model).attach(model):
        cached = sample_tokens(model, p, range(6), use_cache=True, **kw)
        plain = sample_tokens(model, p, range(6), use_cache=False, **kw)
    assert cached == plain


def test_same_seed_same_text_alone_or_batched(tiny):
    model, tok = tiny
    kw = dict(max_new_tokens=16)
    batched = generate_texts(model, tok, list(range(8)), **kw)
    assert generate_texts(model, tok, [5], **kw) == [batched[5]]
    assert generate_texts(model, tok, list(range(8)), batch_size=3, **kw) == batched
    assert generate_texts(model, tok, list(range(8)), **kw) == batched  # and again
    assert len(set(batched)) > 1  # different seeds, different texts
    with _forcing(model).attach(model):
        forced = generate_texts(model, tok, list(range(8)), **kw)
        assert generate_texts(model, tok, [2, 7], **kw) == [forced[2], forced[7]]
    assert forced != batched


def test_eos_cuts_a_row_without_touching_others(tiny):
    model, tok = tiny
    p = start_ids(tok)
    full = sample_tokens(model, p, range(4), max_new_tokens=12, stop_at_eos=False)
    # Pretend the 4th token of seed 1 is the EOS: only that row is cut.
    eos = full[1][3]
    cut = sample_tokens(model, p, range(4), max_new_tokens=12, eos_token_id=eos)
    for row, whole in zip(cut, full, strict=True):
        expect = whole[: whole.index(eos)] if eos in whole else whole
        assert row == expect


def test_sample_next_rules():
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0], [2.0, 2.0, 0.0, 0.0]])
    gens = lambda: [torch.Generator().manual_seed(s) for s in (0, 1)]  # noqa: E731
    assert sample_next(logits, gens(), temperature=0.0, top_p=0.9).tolist() == [1, 0]
    # A tiny nucleus keeps only the most probable token (ties: the lower id).
    assert sample_next(logits, gens(), temperature=1.0, top_p=1e-6).tolist() == [1, 0]
    # Row independence: a row's draw does not depend on the other rows.
    one = sample_next(logits[1:], gens()[1:], temperature=1.0, top_p=0.9)
    two = sample_next(logits, gens(), temperature=1.0, top_p=0.9)
    assert one.item() == two[1].item()
    # Many draws follow the nucleus distribution's support.
    g = [torch.Generator().manual_seed(0)]
    seen = {sample_next(logits[:1], g, 1.0, 0.9).item() for _ in range(200)}
    assert seen == {1, 2}  # p = .84, .11 (within 0.9), the rest cut


def test_start_ids(tmp_path):
    from tokenizers import processors

    from helpers import make_tokenizer

    tok = make_tokenizer(tmp_path / "t")
    assert start_ids(tok) == [tok.eos_token_id]  # adds no BOS: explicit </s>
    ids = start_ids(tok, "The water")
    assert ids[0] == tok.eos_token_id and len(ids) > 1
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    assert start_ids(tok) == [bos]  # the tokenizer's own BOS
    assert start_ids(tok, "The water")[:1] == [bos]
    assert start_ids(tok, "The water").count(bos) == 1


def test_context_length(tiny):
    model, tok = tiny
    p = start_ids(tok)  # one token; the tiny models have 64 positions
    if model.config.model_type == "gpt2":  # learned positions: a one-line error
        with pytest.raises(BabelscopeError, match="lower max_new_tokens to 63"):
            sample_tokens(model, p, [0], max_new_tokens=64)
    else:  # sinusoidal positions extend: generation goes on past the configured length
        assert len(sample_tokens(model, p, [0], max_new_tokens=66, stop_at_eos=False)[0]) == 66


def test_token_losses_match_the_model_loss(tiny):
    model, tok = tiny
    p = start_ids(tok)
    outs = sample_tokens(model, p, range(3), max_new_tokens=7, stop_at_eos=False)
    outs[1] = outs[1][:3]  # rows of different lengths: padding is not scored
    outs.append([])  # nothing generated: NaN
    got = token_losses(model, p, outs, batch_size=2)
    for row, loss in zip(outs[:3], got[:3], strict=True):
        ids = torch.tensor([p + row])
        labels = ids.clone()
        labels[0, : len(p)] = -100  # score only the generated tokens
        with torch.no_grad():
            ref = model(input_ids=ids, labels=labels).loss.item()
        assert loss == pytest.approx(ref, rel=1e-4)
    assert np.isnan(got[3])
