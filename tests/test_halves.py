"""The split of pools into halves: translations together, labels balanced, seeded."""

import numpy as np
import pandas as pd

from babelscope.analysis.halves import assign_halves, sentence_groups


def test_sentence_groups_follow_align_id_and_controls():
    corpus = pd.DataFrame({
        "id": ["eng:1", "spa:1", "eng:2", "eng~x:eng:2"],
        "align_id": ["g1", "g1", None, None],
    })  # fmt: skip
    g = sentence_groups(corpus)
    assert g["eng:1"] == g["spa:1"] == "g1"
    assert g["eng:2"] == "eng:2" and g["eng~x:eng:2"] == "eng:2"


def test_halves_balance_keep_groups_and_are_seeded():
    rng = np.random.default_rng(0)
    pools = []
    for lang in ("eng", "spa", "zho"):
        ids = [f"g{i}" for i in range(200)] + [f"{lang}{i}" for i in range(100)]
        y = rng.random((300, 6)) < 0.1
        y[:200] = pools[0][1][:200] if pools else y[:200]  # translations share labels
        pools.append((ids, y))
    group_of = {i: i for ids, _ in pools for i in ids}
    halves = assign_halves(pools, group_of, seed=3)
    again = assign_halves(pools, group_of, seed=3)
    other = assign_halves(pools, group_of, seed=4)
    for h, h2 in zip(halves, again, strict=True):
        assert (h == h2).all()
    assert any((h != h2).any() for h, h2 in zip(halves, other, strict=True))
    for (_ids, y), h in zip(pools, halves, strict=True):
        assert (h[:200] == halves[0][:200]).all()  # a group is in one half everywhere
        assert abs(int((h == 0).sum()) - 150) <= 10
        for c in range(6):
            n0, n1 = int(y[h == 0, c].sum()), int(y[h == 1, c].sum())
            assert abs(n0 - n1) <= max(3, 0.2 * (n0 + n1)), (c, n0, n1)


def test_single_positive_concepts_do_not_all_land_in_one_half():
    ids = [f"s{i}" for i in range(8)]
    y = np.eye(8, dtype=bool)
    (h,) = assign_halves([(ids, y)], {i: i for i in ids}, seed=0)
    assert (h == 0).sum() == 4
