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
from helpers import make_tokenizer


def test_token_sets_and_table(tmp_path):
    tok = make_tokenizer(tmp_path)
    lex = ConceptLexicon(table={
        "data": {"eng": ["data"], "spa": ["datos|!datum"], "zho": ["数据"]},
        "water": {"eng": ["water*"], "spa": ["agua"]},
    })  # fmt: skip
    assert word_forms(["!x", "water*", "agua"]) == ["water", "agua"]
    assert token_set(tok, ["data"]) == token_set(tok, ["data", "data"])
    t = lexical_table(tok, lex, ["data", "water"], ["eng", "spa", "zho"])
    assert len(t) == 3 + 1  # data: three pairs; water: eng-spa
    row = t[(t.concept == "data") & (t.lang_a == "eng") & (t.lang_b == "spa")].iloc[0]
    assert row.shared and 0 < row.jaccard <= 1  # "data" and "datos" share pieces
    zho = t[(t.concept == "data") & (t.lang_b == "zho")]
    assert not zho["shared"].any() and (zho["jaccard"] == 0).all()  # different scripts
    mask = split_mask(t, ["eng", "spa", "zho"], ["data", "water"])
    assert mask[0, 0, 1] and mask[1, 0, 0] and not mask[0, 0, 2]


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


def test_lexical_correlation_detects_and_refutes():
    rng = np.random.default_rng(1)
    rows = [dict(concept=f"c{c}", lang_a="a", lang_b=f"b{b}", jaccard=rng.random(), shared=True,
                 n_tokens_a=1, n_tokens_b=1) for c in range(6) for b in range(8)]  # fmt: skip
    table = pd.DataFrame(rows)
    tied = table[["concept", "lang_a", "lang_b"]].assign(overlap=table["jaccard"] * 0.5 + 0.01)
    r = lexical_correlation(table, tied, n_perm=200)
    assert r["rho"] > 0.99 and r["p_value"] < 0.01
    free = tied.assign(overlap=rng.random(len(tied)))
    r = lexical_correlation(table, free, n_perm=200)
    assert abs(r["rho"]) < 0.3 and r["p_value"] > 0.05
