"""Cross-lingual alignment: planted experts, chance levels, bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.alignment import (
    AlignSettings,
    crosslingual_chance,
    crosslingual_count,
    jaccard_chance,
    membership,
    pair_matrices,
    run_alignment,
)
from babelscope.analysis.experts import mark_complete, save_shard, score_pool
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata

LANGS = ["eng", "spa", "deu", "zho"]
WIDTH = 200  # units per layer; two layers


def planted_run(out, steps=(0, 10), langs=LANGS, n=160, n_random=8, seed=0):
    """Expert shards from synthetic activations.

    Concept 'water' in every language. Layer 0 units 0, 1 fire on it in every language
    (at the last step only; at the first they are noise). Layer 1 units 10+2i, 11+2i fire
    on it in language i only. Concepts 'rand0'.. have random labels and no planted unit.
    """
    rng = np.random.default_rng(seed)
    for s_i, step in enumerate(steps):
        for li, lang in enumerate(langs):
            y_water = np.zeros(n, bool)
            y_water[rng.choice(n, 30, replace=False)] = True
            ys = [y_water] + [rng.random(n) < 0.25 for _ in range(n_random)]
            labels = np.stack(ys, axis=1)
            x = {la: rng.standard_normal((n, WIDTH)).astype(np.float32) for la in (0, 1)}
            if s_i == len(steps) - 1:
                x[0][:, :2] += 4 * y_water[:, None]
            x[1][:, 10 + 2 * li : 12 + 2 * li] += 4 * y_water[:, None]
            stats, widths = score_pool(x.__getitem__, [0, 1], labels, threads=1)
            concepts = ["water"] + [f"rand{i}" for i in range(n_random)]
            save_shard(out, step, lang, stats, concepts=concepts, layers=[0, 1], widths=widths,
                       n_pos=labels.sum(0), n_neg=n - labels.sum(0))  # fmt: skip
        mark_complete(out, step, list(langs))
    return out


def test_measures_on_arrays():
    ap = np.array([[0.9, 0.8, 0.1, 0.0], [0.9, 0.1, 0.8, 0.0], [0.1, 0.2, 0.3, 0.95]])
    mem = membership(ap, 2)
    assert mem.tolist() == [
        [True, True, False, False],
        [True, False, True, False],
        [False, False, True, True],
    ]
    pm = pair_matrices(mem, ap, 2)
    assert pm["overlap"][0, 1] == 0.5 and pm["jaccard"][0, 1] == pytest.approx(1 / 3)
    assert pm["transfer"][0, 1] == pytest.approx((0.9 + 0.1) / 2)  # eng experts scored on lang 1
    assert crosslingual_count(mem, 2) == 2  # units 0 (langs 0,1) and 2 (langs 1,2)
    # Binomial expectation: units * P(Bin(L, K/U) >= m)
    assert crosslingual_chance(4, 2, 3, 2) == pytest.approx(4 * (3 * 0.25 * 0.5 + 0.125))
    assert jaccard_chance(100, 1) == pytest.approx(1 / 199)


def test_planted_experts(tmp_path):
    planted_run(tmp_path)
    df = run_alignment(tmp_path, AlignSettings(k=2, k_model=4, n_trajectory_units=3))
    assert set(df["measure"]) == {"overlap", "jaccard", "transfer_ap", "self_ap", "crosslingual"}
    assert set(df["layer"]) == {"0", "1", "all"}
    meta = read_parquet_metadata(tmp_path / "results" / "alignment.parquet")
    assert meta["min_languages"] == 2 and "binomial" in meta["crosslingual_chance"]

    # Whole-concept check on 'water' alone: shared units counted, language-only ones not.
    from babelscope.analysis.alignment import _load_step

    shards = _load_step(tmp_path, 10, LANGS)
    ap0 = np.stack([shards[lang]["ap"][0, :WIDTH] for lang in LANGS]).astype(float)
    ap1 = np.stack([shards[lang]["ap"][0, WIDTH:] for lang in LANGS]).astype(float)
    mem0, mem1 = membership(ap0, 2), membership(ap1, 2)
    assert mem0[:, :2].all() and crosslingual_count(mem0, 4) == 2  # in all four languages
    for li in range(4):
        assert mem1[li, 10 + 2 * li : 12 + 2 * li].all()  # each language finds its own units
    assert crosslingual_count(mem1, 2) == 0  # ... which no other language shares

    # Trajectories follow the shared units: in all 4 languages at the last step, and their AP
    # rises from noise (step 0) to near 1 (step 10).
    tr = pd.read_parquet(tmp_path / "results" / "alignment_trajectories.parquet")
    top = tr[tr["rank"] <= 2]
    assert set(zip(top["layer"], top["unit"], strict=True)) == {(0, 0), (0, 1)}
    assert (top["concept"] == "water").all() and (top["n_languages_last"] == 4).all()
    assert top[top.step == 0]["ap"].max() < 0.6 and top[top.step == 10]["ap"].min() > 0.9

    # Overlap matrices: language x language, per step and scope.
    ov = pd.read_parquet(tmp_path / "results" / "alignment_overlap.parquet")
    assert set(ov["lang_a"]) == set(LANGS) and len(ov[(ov.step == 10) & (ov.layer == "0")]) == 12


def test_random_overlap_at_chance(tmp_path):
    """Concepts with random labels: every measure sits at its chance level."""
    planted_run(tmp_path, steps=(0,), n_random=12, seed=1)
    df = run_alignment(tmp_path, AlignSettings(k=20, n_trajectory_units=0))
    # 'water' layer 1 holds language-specific experts only: also at chance. Layer 1 is all noise
    # apart from the 8 planted units, which no two languages share.
    row = df[(df.layer == "1") & (df.measure == "overlap")].iloc[0]
    assert row["chance"] == pytest.approx(20 / 200)
    assert abs(row["value"] - row["chance"]) < 0.03
    row = df[(df.layer == "1") & (df.measure == "jaccard")].iloc[0]
    assert abs(row["value"] - row["chance"]) < 0.03
    row = df[(df.layer == "1") & (df.measure == "crosslingual")].iloc[0]
    assert row["chance"] == pytest.approx(crosslingual_chance(200, 20, 4, 2))
    assert abs(row["value"] - row["chance"]) < 0.25 * row["chance"]
    row = df[(df.layer == "1") & (df.measure == "transfer_ap")].iloc[0]
    assert abs(row["value"] - row["chance"]) < 0.03  # random experts predict at the positive rate


def test_bad_input(tmp_path):
    with pytest.raises(BabelscopeError, match="run `babelscope experts"):
        run_alignment(tmp_path)
    planted_run(tmp_path, steps=(0,), langs=["eng"], n_random=1)
    with pytest.raises(BabelscopeError, match="at least two languages"):
        run_alignment(tmp_path)
    out2 = tmp_path / "two"
    planted_run(out2, steps=(0,), langs=["eng", "spa"], n_random=1)
    with pytest.raises(BabelscopeError, match="K = 500 is larger than the 200 units of layer 0"):
        run_alignment(out2, AlignSettings(k=500))
    with pytest.raises(BabelscopeError, match="larger than the 400 units of the whole model"):
        run_alignment(out2, AlignSettings(k_model=401))
    with pytest.raises(BabelscopeError, match="min_languages = 3"):
        run_alignment(out2, AlignSettings(min_languages=3))
    with pytest.raises(BabelscopeError, match="no expert scores for fra"):
        run_alignment(out2, AlignSettings(languages=["eng", "fra"]))
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AlignSettings(k_fraction=0.01, bogus=1)
    assert math.isclose(AlignSettings().k_fraction, 0.01)
