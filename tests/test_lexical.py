"""Lexical overlap of concept words under the model's tokenizer, the token-sharing /
token-disjoint split of the alignment measures, and its correlation with overlap."""

import numpy as np
import pandas as pd

from babelscope.analysis.alignment_measures import scope_measures
from babelscope.analysis.lexical import (
    lexical_correlation,
    lexical_table,
    split_mask,
    token_set,
    word_forms,
)
from babelscope.concepts.lexicon import ConceptLexicon


def _bpe():
    """A byte-level BPE that has learned the test's words as whole tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["computer computer data datos agua water 数据 计算机"] * 50
    tok.train_from_iterator(
        text,
        trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_token_sets_and_table():
    tok = _bpe()
    lex = ConceptLexicon(table={
        "computer": {"eng": ["computer"], "nld": ["computer"], "zho": ["计算机"]},
        "water": {"eng": ["water*"], "spa": ["agua|!aguacate"]},
    })  # fmt: skip
    assert word_forms(["!x", "water*", "agua"]) == ["water", "agua"]
    assert token_set(tok, ["computer"]) == token_set(tok, ["computer", "computer"])
    assert token_set(tok, ["computer"])  # a whole-word token is kept
    t = lexical_table(tok, lex, ["computer", "water"], ["eng", "nld", "zho", "spa"])
    assert len(t) == 3 + 1  # computer: three pairs; water: eng-spa
    row = t[(t.concept == "computer") & (t.lang_a == "eng") & (t.lang_b == "nld")].iloc[0]
    assert row.shared and row.jaccard == 1.0
    zho = t[(t.concept == "computer") & (t.lang_b == "zho")]
    assert not zho["shared"].any() and (zho["jaccard"] == 0).all()  # different scripts
    w = t[t.concept == "water"].iloc[0]
    assert not w.shared  # water / agua: no token of two or more characters in common
    mask = split_mask(t, ["eng", "nld", "zho", "spa"], ["computer", "water"])
    assert mask[0, 0, 1] == 1 and mask[1, 0, 0] == 1 and mask[0, 0, 2] == 0
    assert mask[0, 1, 1] == -1  # nld has no words for water: unknown, in neither split


def test_meaningful_tokens():
    from babelscope.analysis.lexical import _meaningful

    assert _meaningful(" data") and _meaningful("水") and _meaningful("ab")
    assert not _meaningful(" s") and not _meaningful(" ") and not _meaningful("\ufffd")
    assert not _meaningful(".")


def test_split_measures_separate_planted_lexical_alignment():
    """Experts shared only where the words share tokens: the shared rows align, the
    disjoint rows do not."""
    rng = np.random.default_rng(0)
    n_l, n_c, n_u, k = 4, 6, 200, 5
    ap0, ap1 = rng.random((2, n_l, n_c, n_u)).astype(np.float32) * 0.5
    split = np.zeros((n_l, n_c, n_l), bool)
    for a, b, base in ((0, 1, 0), (2, 3, 100)):  # two pairs share the concept's tokens
        split[a, :, b] = split[b, :, a] = True
        for c in range(n_c):
            units = slice(base + 10 * c, base + 10 * c + k)  # the same units in both
            ap0[[a, b], c, units] += 1
            ap1[[a, b], c, units] += 1
    r = scope_measures(ap0, ap1, k, 2, items=True, split=split)
    assert r.value["overlap_shared"] == 1.0
    assert r.value["overlap_disjoint"] < 0.1
    assert r.value["transfer_ap_shared"] > r.value["transfer_ap_disjoint"] + 0.5
    n_shared = len(r.items["overlap_shared"][0])
    assert n_shared + len(r.items["overlap_disjoint"][0]) == len(r.items["overlap"][0])
    assert (r.cells["overlap"][:, 0] < r.cells["overlap"][:, 2]).all()
    unknown = split.astype(np.int8)
    unknown[3, :, :] = unknown[:, :, 3] = -1  # a language without words: in neither split
    u = scope_measures(ap0, ap1, k, 2, items=True, split=unknown)
    n_split = len(u.items["overlap_shared"][0]) + len(u.items["overlap_disjoint"][0])
    assert n_split == len(u.items["overlap"][0]) - 3 * n_c  # the three pairs with language 3


def test_lexical_correlation_detects_and_refutes():
    rng = np.random.default_rng(1)
    rows = [dict(concept=f"c{c}", lang_a="a", lang_b=f"b{b}", jaccard=rng.random(), shared=True,
                 n_tokens_a=1, n_tokens_b=1) for c in range(6) for b in range(8)]  # fmt: skip
    table = pd.DataFrame(rows)
    tied = table[["concept", "lang_a", "lang_b"]].assign(overlap=table["jaccard"] * 0.5 + 0.01)
    r = lexical_correlation(table, tied, n_perm=200)
    assert r["rho"] > 0.99 and r["p_value"] < 0.01 and r["ci_lo"] > 0.9
    free = tied.assign(overlap=rng.random(len(tied)))
    r = lexical_correlation(table, free, n_perm=200)
    assert abs(r["rho"]) < 0.3 and r["p_value"] > 0.05 and r["ci_lo"] < 0 < r["ci_hi"]
