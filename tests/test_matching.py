"""Matched pools: the same positives in every language, negatives matched to the
positives' source and length, drawn from the base pool first."""

import numpy as np
import pandas as pd

from babelscope.concepts.matching import MatchSettings, capacity, draw_matched, strata


def _lang(rng, n=300, share_django=0.9):
    """A language whose concept positives are mostly Django strings (a source confound)."""
    src = rng.choice(["build", "django", "udhr"], size=n, p=[0.7, 0.2, 0.1])
    lengths = rng.integers(5, 200, size=n)
    pos = np.zeros(n, bool)
    dj = np.flatnonzero(src == "django")
    pos[rng.choice(dj, int(30 * share_django), replace=False)] = True
    other = np.flatnonzero(src != "django")
    pos[rng.choice(other, 30 - int(30 * share_django), replace=False)] = True
    return src, lengths, pos


def test_negatives_match_positives_strata():
    rng = np.random.default_rng(0)
    src, lengths, pos = _lang(rng)
    st = strata(src, lengths, 3)
    order = rng.permutation(len(src))
    cap = capacity(pos, pos, st, 2)
    p, n = draw_matched(pos, pos, st, order, cap, 2, 0, "eng", "password")
    assert len(p) == cap and len(n) == 2 * cap
    assert pos[p].all() and not pos[n].any()
    # every stratum holds exactly two negatives per positive
    for s in np.unique(st[p]):
        assert (st[n] == s).sum() == 2 * (st[p] == s).sum()
    assert (src[n] == "django").mean() == (src[p] == "django").mean()
    # negatives are the first free sentences of their stratum in the shared order
    for s in np.unique(st[n]):
        free = np.flatnonzero(~pos & (st == s))
        assert set(n[st[n] == s]) == set(free[np.argsort(order[free])][: (st[n] == s).sum()])
    again = draw_matched(pos, pos, st, order, cap, 2, 0, "eng", "password")
    assert (again[0] == p).all() and (again[1] == n).all()  # seeded


def test_capacity_is_limited_by_scarce_negatives():
    st = np.array([0] * 10 + [1] * 10)
    pos = np.zeros(20, bool)
    pos[:8] = True  # stratum 0: 8 positives, 2 negatives
    pos[10:12] = True  # stratum 1: 2 positives, 8 negatives
    assert capacity(pos, pos, st, 2) == 1 + 2
    assert capacity(pos, pos, st, 4) == 0 + 2


def test_labels_have_matched_pools_of_equal_size(tmp_path):
    from babelscope.concepts.labels import build_concept_labels, label_matrix, pool_masks

    rng = np.random.default_rng(1)
    rows = []
    for lang, word in (("eng", "water"), ("spa", "agua"), ("deu", "wasser")):
        for i in range(240):
            src = ["build", "django"][i % 2]
            has = (i % 2 == 1 and i % 6 == 1) or i % 40 == 0  # positives mostly django
            text = f"{'x ' * int(rng.integers(2, 30))}{word if has else 'nothing'} {i}"
            rows.append(dict(id=f"{lang}:{i}", lang=lang, script="Latn", text=text, source=src,
                             align_id=None, split="train"))  # fmt: skip
    corpus = pd.DataFrame(rows)
    table = tmp_path / "t.tsv"
    table.write_text(
        "concept\tlang\twords\nwater\teng\twater\nwater\tspa\tagua\nwater\tdeu\twasser\n"
    )
    labels, counts = build_concept_labels(
        corpus, ["eng", "spa", "deu"], table=table, min_positives=5, pool_size=120,
        match=MatchSettings(ratio=2, length_bins=2),
    )  # fmt: skip
    sizes = set()
    for lang in ("eng", "spa", "deu"):
        ids, concepts, y = label_matrix(labels, lang)
        matched, base = pool_masks(labels, lang, ids, concepts)
        m = matched[:, 0]
        sizes.add((int((y[:, 0] & m).sum()), int((~y[:, 0] & m).sum())))
        src = corpus.set_index("id").loc[ids, "source"].to_numpy()
        # the same share of django strings among positives and negatives
        assert (src[m & y[:, 0]] == "django").mean() == (src[m & ~y[:, 0]] == "django").mean()
        assert base.sum() >= 100
    assert len(sizes) == 1  # the same pool in every language
    ((npos, nneg),) = sizes
    assert nneg == 2 * npos and npos >= 5
    c = counts[counts["concept"] == "water"]
    assert (c["matched_positives"] == npos).all()


def test_unmatched_only(tmp_path):
    from babelscope.concepts.labels import build_concept_labels

    corpus = pd.DataFrame([dict(id=f"eng:{i}", lang="eng", script="Latn",
                                text=("water" if i % 3 == 0 else "dry") + f" {i}", source="s",
                                align_id=None, split="train") for i in range(60)])  # fmt: skip
    table = tmp_path / "t.tsv"
    table.write_text("concept\tlang\twords\nwater\teng\twater\n")
    labels, counts = build_concept_labels(corpus, ["eng"], table=table, min_positives=5,
                                          match=MatchSettings(enabled=False))  # fmt: skip
    assert not labels["matched"].any() and labels["base"].all()
    assert (counts["matched_positives"] == 0).all()
