"""AP over each concept's members: equal to scikit-learn on the subset, per half and
in-sample; concepts with the same members share one ranking."""

import numpy as np
from sklearn.metrics import average_precision_score

from babelscope.analysis.member_scores import half_scores, member_groups, score_members


def _data(seed=0, n=60, units=7):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, units)).astype(np.float32)
    y = rng.random((n, 3)) < 0.3
    members = np.ones((n, 3), bool)
    members[rng.random(n) < 0.4, 1] = False  # concept 1 on a subset
    members[:, 2] = members[:, 1]  # concept 2: the same subset
    half = (np.arange(n) % 2).astype(np.int8)
    return x, y, members, half


def test_members_ap_equals_sklearn_on_the_subset():
    x, y, members, half = _data()
    stats, widths = score_members(lambda _l: x, [0], y, members, threads=1)
    assert widths == [x.shape[1]]
    hr, ap0, ap1 = half_scores(x, y, half, members)
    for j in range(3):
        for u in range(x.shape[1]):
            m = members[:, j]
            want = average_precision_score(y[m, j], x[m, u])
            assert abs(stats["ap"][j, u] - want) < 1e-6
            for h, ap in ((0, ap0), (1, ap1)):
                mh = m & (half == h)
                assert abs(ap[j, u] - average_precision_score(y[mh, j], x[mh, u])) < 1e-5
    assert hr.which[0][1] == hr.which[0][2] != hr.which[0][0]  # one ranking for 1 and 2


def test_member_groups_and_whole_pool():
    from babelscope.analysis.experts import score_pool

    x, y, members, _ = _data(1)
    groups = member_groups(members)
    assert [list(c) for _, c in groups] == [[0], [1, 2]]
    a = score_pool(lambda _l: x, [0], y, threads=1)[0]["ap"]
    b = score_members(lambda _l: x, [0], y, np.ones_like(y), threads=1)[0]["ap"]
    np.testing.assert_array_equal(a, b)
