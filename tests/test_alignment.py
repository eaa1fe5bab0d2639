"""Cross-lingual alignment end to end: shards written by the experts stage's own step
(held-out halves and the null), planted experts, the rows' references, bad input."""

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.alignment import (
    AlignSettings,
    crosslingual_floor,
    run_alignment,
    scopes_for,
)
from babelscope.analysis.alignment_measures import scope_measures
from babelscope.analysis.alignment_null import make_plan
from babelscope.analysis.expert_scoring import score_step
from babelscope.analysis.experts import ExpertSettings, mark_complete
from babelscope.analysis.halves import assign_halves
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata
from helpers_alignment import pool_ns

LANGS = ["eng", "spa", "deu", "zho"]
WIDTH = 100  # units per layer; two layers


class _Pooled:
    def __init__(self, x: dict[int, np.ndarray]):
        self.arrays, self.layers, self.n_truncated = x, [0, 1], 0

    def get(self, layer):
        return self.arrays[layer]

    def flat(self):
        return np.concatenate([self.arrays[0], self.arrays[1]], axis=1)


def planted_run(out, steps=(0, 10), langs=LANGS, n=120, n_random=4, seed=0, permutations=19):
    """Concept 'water' in every language: layer 0 units 0, 1 fire on it in every language at
    the last step (noise before); layer 1 units 10+2i, 11+2i in language i only. Concepts
    'rand*' have random labels. Translations (same index) share their group."""
    rng = np.random.default_rng(seed)
    concepts = ["water"] + [f"rand{i}" for i in range(n_random)]
    pools, acts = [], {}
    y_water = np.zeros(n, bool)
    y_water[rng.choice(n, 30, replace=False)] = True
    for lang in langs:
        labels = np.stack([y_water] + [rng.random(n) < 0.25 for _ in range(n_random)], axis=1)
        pools.append(pool_ns(
            lang=lang, ids=[f"{lang}:{i}" for i in range(n)], concepts=concepts, labels=labels,
            sources=["s"] * n, texts=["x" * (5 + i % 7) for i in range(n)],
            groups=[f"g{i}" for i in range(n)],
        ))  # fmt: skip
    group_of = {i: g for p in pools for i, g in zip(p.ids, p.groups, strict=True)}
    halves = assign_halves([(p.ids, p.labels) for p in pools], group_of, 0)
    align = AlignSettings(k=2, k_model=4, permutations=permutations, n_trajectory_units=3)
    plan = make_plan(pools, halves, 2, permutations=permutations, seed=0, n_bins=2,
                     settings=align.null_key())  # fmt: skip
    for s_i, step in enumerate(steps):
        for li, p in enumerate(pools):
            x = {la: rng.standard_normal((n, WIDTH)).astype(np.float32) for la in (0, 1)}
            if s_i == len(steps) - 1:
                x[0][:, :2] += 4 * y_water[:, None]
            x[1][:, 10 + 2 * li : 12 + 2 * li] += 4 * y_water[:, None]
            acts[p.lang] = _Pooled(x)
        score_step(out, step, pools, halves, lambda p: acts[p.lang], ExpertSettings(threads=1),
                   plan=plan if permutations else None, align=align)  # fmt: skip
        mark_complete(out, step, list(langs))
    return align


def test_measures_against_brute_force():
    rng = np.random.default_rng(0)
    n_l, n_c, n_u, k = 4, 5, 60, 5
    ap0, ap1 = rng.random((2, n_l, n_c, n_u)).astype(np.float32)
    ap0[1, 3] = ap1[1, 3] = np.nan  # concept 3 not scored in language 1
    r = scope_measures(ap0, ap1, k, 2, items=True)

    def top(v):
        return set(np.argsort(-v, kind="stable")[:k].tolist())

    ov, tr, self_ap, cl = [], [], [], []
    for c in range(n_c):
        langs = [a for a in range(n_l) if not np.isnan(ap0[a, c, 0])]
        for a in langs:
            for b in langs:
                t = (
                    ap1[b, c, list(top(ap0[a, c]))].mean() + ap0[b, c, list(top(ap1[a, c]))].mean()
                ) / 2
                (self_ap if a == b else tr).append(t)
                if a < b:
                    ov.append(
                        (
                            len(top(ap0[a, c]) & top(ap1[b, c]))
                            + len(top(ap1[a, c]) & top(ap0[b, c]))
                        )
                        / (2 * k)
                    )
        counts = [
            np.bincount(sum((list(top(ap[a, c])) for a in langs), []), minlength=n_u)
            for ap in (ap0, ap1)
        ]
        cl.append(((counts[0] >= 2).sum() + (counts[1] >= 2).sum()) / 2)
    assert r.value["overlap"] == pytest.approx(np.mean(ov))
    assert r.value["transfer_ap"] == pytest.approx(np.mean(tr), rel=1e-5)
    assert r.value["self_ap"] == pytest.approx(np.mean(self_ap), rel=1e-5)
    assert r.value["crosslingual"] == pytest.approx(np.mean(cl))
    assert len(r.items["overlap"][0]) == len(ov)
    # the different-concept reference pairs E(c, a) with other concepts' sets in b
    dc = []
    for c in range(n_c):
        for a in range(n_l):
            for b in range(a + 1, n_l):
                if np.isnan(ap0[a, c, 0]) or np.isnan(ap0[b, c, 0]):
                    continue
                others = [d for d in range(n_c) if d != c and not np.isnan(ap0[b, d, 0])]
                d01 = np.mean([len(top(ap0[a, c]) & top(ap1[b, d])) for d in others])
                d10 = np.mean([len(top(ap1[a, c]) & top(ap0[b, d])) for d in others])
                dc.append((d01 + d10) / (2 * k))
    assert r.diffconcept["overlap"] == pytest.approx(np.mean(dc))


def test_planted_experts(tmp_path):
    align = planted_run(tmp_path)
    df = run_alignment(tmp_path, align)
    assert set(df["measure"]) == {"overlap", "jaccard", "transfer_ap", "self_ap", "crosslingual",
                                  "self_ap_insample"}  # fmt: skip
    assert set(df["layer"]) == {"0", "1", "all"}
    cols = {
        "value",
        "ci_lo",
        "ci_hi",
        "null_mean",
        "null_p95",
        "p_value",
        "n_null",
        "diffconcept",
        "floor",
    }
    assert cols <= set(df.columns)
    meta = read_parquet_metadata(tmp_path / "results" / "alignment.parquet")
    assert meta["min_languages"] == 2 and "permuted" in meta["null"]

    def row(step, layer, measure):
        return df[(df.step == step) & (df.layer == layer) & (df.measure == measure)].iloc[0]

    # layer 0 at the last step: shared 'water' units -> overlap above the null
    r = row(10, "0", "overlap")
    assert r["n_null"] == 19 and r["p_value"] <= 0.05 and r["value"] > r["null_p95"]
    assert r["ci_lo"] <= r["value"] <= r["ci_hi"]
    # layer 1: each language's own units -> held-out self AP above its null, overlap is not
    assert row(10, "1", "self_ap")["p_value"] <= 0.05
    assert row(10, "1", "overlap")["p_value"] > 0.05
    # the winner's curse: in-sample self AP is above the held-out one
    assert row(0, "0", "self_ap_insample")["value"] > row(0, "0", "self_ap")["value"]
    # floors are closed forms, shown but not used as the reference
    assert row(10, "0", "overlap")["floor"] == pytest.approx(2 / WIDTH)
    assert row(10, "all", "crosslingual")["floor"] == pytest.approx(
        crosslingual_floor(200, 4, 4, 2)
    )

    tr = pd.read_parquet(tmp_path / "results" / "alignment_trajectories.parquet")
    top = tr[tr["rank"] <= 2]
    assert set(zip(top["layer"], top["unit"], strict=True)) == {(0, 0), (0, 1)}
    assert (top["selected_on"] == "half0").all()
    assert top[top.step == 0]["ap"].max() < 0.6 and top[top.step == 10]["ap"].min() > 0.8

    ov = pd.read_parquet(tmp_path / "results" / "alignment_overlap.parquet")
    assert set(ov["lang_a"]) == set(LANGS) and len(ov[(ov.step == 10) & (ov.layer == "0")]) == 16
    assert {"overlap_null_mean", "overlap_p_value", "transfer_ap_p_value"} <= set(ov.columns)


def test_null_must_match_the_settings(tmp_path):
    planted_run(tmp_path, steps=(0,))
    with pytest.raises(BabelscopeError, match="other alignment settings"):
        run_alignment(tmp_path, AlignSettings(k=3, k_model=4, permutations=19))


def test_bad_input(tmp_path):
    with pytest.raises(BabelscopeError, match="run `babelscope experts"):
        run_alignment(tmp_path)
    planted_run(tmp_path, steps=(0,), langs=["eng"], n_random=1, permutations=0)
    with pytest.raises(BabelscopeError, match="at least two languages"):
        run_alignment(tmp_path)
    out2 = tmp_path / "two"
    planted_run(out2, steps=(0,), langs=["eng", "spa"], n_random=1, permutations=0)
    with pytest.raises(BabelscopeError, match="K = 500 is larger than the 100 units of layer 0"):
        run_alignment(out2, AlignSettings(k=500))
    with pytest.raises(BabelscopeError, match="larger than the 200 units of the whole model"):
        run_alignment(out2, AlignSettings(k_model=201))
    with pytest.raises(BabelscopeError, match="min_languages = 3"):
        run_alignment(out2, AlignSettings(min_languages=3))
    with pytest.raises(BabelscopeError, match="no expert scores for fra"):
        run_alignment(out2, AlignSettings(languages=["eng", "fra"]))
    assert scopes_for([0, 1], [100, 100], AlignSettings(k=2))[-1] == ("all", 0, 200, 2)


def test_control_language_is_reported_apart():
    """A cipher control (which must align with its original) stays out of the averages and
    the cross-lingual count, and keeps its own row in the language matrices."""
    rng = np.random.default_rng(3)
    ap0, ap1 = rng.random((2, 4, 5, 60)).astype(np.float32)
    ap0[3], ap1[3] = ap0[0], ap1[0]  # language 3 is a copy of language 0 ...
    for lang in (0, 3):  # ... sharing its experts (units 0-4) in both halves
        ap0[lang, :, :5] += 1
        ap1[lang, :, :5] += 1
    real = np.array([True, True, True, False])
    with_control = scope_measures(ap0, ap1, 5, 2, real=real)
    only_real = scope_measures(ap0[:3], ap1[:3], 5, 2)
    for name in ("overlap", "transfer_ap", "self_ap", "crosslingual"):
        assert with_control.value[name] == pytest.approx(only_real.value[name]), name
        assert with_control.diffconcept[name] == pytest.approx(only_real.diffconcept[name]), name
    assert with_control.pairs["overlap"][0, 3] == 1.0 > with_control.pairs["overlap"][0, 1]
    assert with_control.pairs["overlap"].shape == (4, 4)
