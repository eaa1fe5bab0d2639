"""Steering figures: stacked language bars per condition and the concept-hit rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.report.figures.steering import hit_rates, language_shares, plot_steering


def fake_table(concepts=("water", "music"), steps=(0, 8, 64)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    langs = ["spa", "eng", "por", "zho", "und", "deu", "fra", "ita", "rus", "jpn", "ara", "hin"]
    rows = []
    for step in steps:
        for concept in concepts:
            for cond in ("experts", "none", "random"):
                for seed in range(20):
                    rows.append(dict(step=step, concept=concept, source_lang="spa", condition=cond,
                                     k=10, statistic="on_p50", seed=seed, text="x",
                                     detected_lang=str(rng.choice(langs)), confidence=0.9,
                                     lid_method="fasttext", concept_hit=bool(rng.random() < 0.3)))  # fmt: skip
    return pd.DataFrame(rows)


def test_shares_sum_to_one_and_rare_languages_pooled():
    df = fake_table()
    sh = language_shares(df, max_langs=4)
    total = sh.groupby(["concept", "condition", "step"])["share"].sum()
    assert np.allclose(total, 1.0)
    assert set(sh["lang"]) <= set(df["detected_lang"].value_counts().index[:5]) | {"other", "und"}
    assert "other" in set(sh["lang"]) and "und" in set(sh["lang"])


def test_hit_rates():
    df = fake_table(concepts=("water",), steps=(1,))
    r = hit_rates(df)
    assert len(r) == 3
    for _, row in r.iterrows():
        sub = df[df["condition"] == row["condition"]]
        assert row["hit_rate"] == pytest.approx(sub["concept_hit"].mean())


@pytest.mark.parametrize("concepts", [("water",), ("a", "b", "c", "d", "e")])
def test_figures_written(tmp_path, concepts):
    df = fake_table(concepts=concepts)
    df.to_parquet(tmp_path / "steering.parquet")
    paths = plot_steering(tmp_path / "steering.parquet", tmp_path / "figures")
    names = sorted(p.name for p in paths)
    assert names == [
        "steering_concept_hits.png", "steering_concept_hits.svg",
        "steering_languages.png", "steering_languages.svg",
    ]  # fmt: skip
    for p in paths:
        assert p.stat().st_size > 1000
    assert plot_steering(df.iloc[:0], tmp_path / "empty") == []
