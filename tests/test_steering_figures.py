"""Steering figures: the dose-response with intervals and the stacked language bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.report.figures.steering import language_shares, plot_steering


def fake_table(concepts=("water", "music"), steps=(0, 8, 64), ks=(10, 100)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    langs = ["eng", "por", "zho", "und", "deu", "fra", "ita", "rus", "jpn", "ara", "hin", "tur"]
    rows = []
    for step in steps:
        for concept in concepts:
            for cond, k in [("none", 0)] + [(c, k) for c in ("experts", "random") for k in ks]:
                for seed in range(20):
                    rows.append(dict(step=step, concept=concept, source_lang="spa", condition=cond,
                                     forced_from="", k=k, draw=seed % 2 if cond == "random" else -1,
                                     seed=seed, text=f"{cond}{k}{seed}{concept}",
                                     lang=str(rng.choice(langs)), lang_score=0.9,
                                     concept_hit=bool(rng.random() < 0.3), fluency=5.0))  # fmt: skip
    return pd.DataFrame(rows)


def test_shares_keep_source_and_english_and_pool_rare_languages():
    df = fake_table()  # no output is Spanish, yet Spanish is kept
    sh = language_shares(df, max_langs=4)
    total = sh.groupby(["condition", "step"])["share"].sum()
    assert np.allclose(total, 1.0)
    assert "eng" in set(sh["lang"]) and "other" in set(sh["lang"]) and "und" in set(sh["lang"])
    assert len(set(sh["lang"]) - {"other", "und"}) <= 4


@pytest.mark.parametrize("concepts", [("water",), ("a", "b", "c", "d", "e")])
def test_figures_written(tmp_path, concepts):
    df = fake_table(concepts=concepts)
    df.to_parquet(tmp_path / "steering.parquet")
    paths = plot_steering(tmp_path / "steering.parquet", tmp_path / "figures")
    names = sorted(p.name for p in paths)
    assert names == [
        "steering_dose_response.png", "steering_dose_response.svg",
        "steering_languages.png", "steering_languages.svg",
    ]  # fmt: skip
    for p in paths:
        assert p.stat().st_size > 1000
    assert plot_steering(df.iloc[:0], tmp_path / "empty") == []
