"""A planted shortcut: a unit that fires on one source, and a concept whose positives are
all from that source. Unmatched pools make the source unit the top expert in every
language and the shortcut table flags the concept; matched pools remove its advantage."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from babelscope.analysis.member_scores import half_scores, score_members
from babelscope.analysis.shortcuts import concept_flags, pool_shortcuts, trivial_scores
from babelscope.concepts.matching import capacity, draw_matched, strata

LANGS = ("eng", "spa", "deu")
N, N_DJANGO, N_POS, UNITS = 400, 60, 40, 60


def _language(rng, lang):
    src = np.array(["django"] * N_DJANGO + ["build"] * (N - N_DJANGO))
    y = np.zeros(N, bool)
    y[rng.choice(N_DJANGO, N_POS, replace=False)] = True  # every positive a Django string
    x = rng.standard_normal((N, UNITS)).astype(np.float32)
    x[:, 0] += 4.0 * (src == "django")  # the shortcut: a source detector
    x[:, 1:5] += 1.5 * y[:, None]  # four units that do respond to the concept
    texts = [f"{'word ' * int(k)}." for k in rng.integers(3, 30, N)]
    return src, y, x, texts


def _pool(lang, y, members, src, texts, variant):
    return SimpleNamespace(lang=lang, concepts=["password"], labels=y[:, None],
                           members=members[:, None], sources=list(src), texts=texts,
                           variant=variant)  # fmt: skip


def _study(seed=0):
    rng = np.random.default_rng(seed)
    out = {"unmatched": [], "matched": []}
    for lang in LANGS:
        src, y, x, texts = _language(rng, lang)
        half = rng.permutation(np.arange(N) % 2).astype(np.int8)
        st = strata(src, np.zeros(N), 1)
        n = capacity(y, y, st, 1)
        p, q = draw_matched(y, y, st, rng.permutation(N), n, 1, seed, lang, "password")
        matched = np.zeros(N, bool)
        matched[np.concatenate([p, q])] = True
        for variant, mem in (("unmatched", np.ones(N, bool)), ("matched", matched)):
            pool = _pool(lang, y, mem, src, texts, variant)
            stats, _ = score_members(lambda _l, x=x: x, [0], pool.labels, pool.members)
            _, ap0, ap1 = half_scores(x, pool.labels, half, pool.members)
            shard = {"concepts": ["password"], "ap_half0": ap0, "ap_half1": ap1}
            cands = trivial_scores(texts, list(src), np.array([len(t.split()) for t in texts]))
            rows = pool_shortcuts(pool, half, shard, cands, k=4, step=0)
            out[variant].append((stats["ap"][0], rows[0]))
    return out


def test_matching_removes_the_planted_source_shortcut():
    out = _study()
    for ap, row in out["unmatched"]:
        assert int(np.argmax(ap)) == 0  # the source detector is the top expert in every language
        assert row["flagged"] and row["best"] == "source"
        assert row["ap_source"] > 0.6
    for ap, row in out["matched"]:
        order = np.argsort(-ap)
        assert 0 not in order[:4]  # no advantage left: the concept units lead
        assert set(order[:4]) == {1, 2, 3, 4}
        assert not row["flagged"]
        assert abs(row["ap_source"] - row["chance"]) < 0.1  # one source: the indicator is flat
        assert row["n_pos"] == row["n_members"] // 2
    # the same number of positives in every language
    assert len({row["n_pos"] for _, row in out["matched"]}) == 1


def test_concept_flags_need_half_the_languages():
    t = pd.DataFrame({
        "pools": ["matched"] * 4 + ["unmatched"] * 2,
        "concept": ["a", "a", "b", "b", "a", "a"],
        "lang": ["eng", "spa", "eng", "eng~x", "eng", "spa"],
        "flagged": [True, False, False, True, False, False],
    })  # fmt: skip
    assert concept_flags(t) == {"a": True, "b": False}  # the control language does not count
    assert concept_flags(t, "unmatched") == {"a": False}


def test_trivial_scores_have_both_directions():
    c = trivial_scores(["12 ab.", "abc"], ["s", "t"], np.array([3, 1]))
    assert c["length"].shape == (2, 2) and (c["length"][:, 0] == -c["length"][:, 1]).all()
    assert c["source"].shape == (2, 2)
    assert c["digits"][0, 0] > c["digits"][1, 0]
