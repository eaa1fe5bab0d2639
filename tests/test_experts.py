"""Concept experts: UnitScores API, shards and experts.parquet over a tiny series, resume, skips."""

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.experts import (
    ExpertSettings,
    UnitScores,
    load_unit_scores,
    run_experts,
    score_pool,
    top_indices,
)
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata


def test_top_indices_and_unit_scores():
    v = np.array([0.1, 0.5, 0.5, np.nan, 0.9, 0.5])
    assert top_indices(v, 3).tolist() == [4, 1, 2]  # ties by unit order, NaN last
    assert top_indices(v, 6).tolist() == [4, 1, 2, 5, 0, 3]
    z = np.zeros(5, np.float32)
    s = UnitScores(7, "water", "eng", [0, 1], [3, 2], np.array([0.1, 0.9, 0.2, 0.9, 0.3]), z, z, z)
    assert s.offsets.tolist() == [0, 3, 5]
    assert s.top(2) == [(0, 1), (1, 0)]
    assert s.top(1, layer=1) == [(1, 0)]
    assert s.flat(1, 1) == 4 and s.unit_of(4) == (1, 1)
    with pytest.raises(BabelscopeError, match="no layer 5"):
        s.top(1, layer=5)
    with pytest.raises(BabelscopeError, match="out of range"):
        s.flat(0, 3)


def test_score_pool_streams_layers():
    rng = np.random.default_rng(0)
    x = {
        0: rng.standard_normal((30, 4)).astype(np.float32),
        2: rng.standard_normal((30, 3)).astype(np.float32),
    }
    y = rng.random((30, 2)) < 0.4
    stats, widths = score_pool(x.__getitem__, [0, 2], y, threads=1)
    assert widths == [4, 3] and stats["ap"].shape == (2, 7)
    from sklearn.metrics import average_precision_score

    assert stats["ap"][1, 5] == pytest.approx(
        average_precision_score(y[:, 1], x[2][:, 1]), abs=1e-12
    )


def _data_dir(tmp_path):
    """A tiny corpus and a labels table: 'water' and 'music' over every language's 8 sentences."""
    from babelscope.corpora.corpus import save_corpus
    from helpers import tiny_corpus

    d = tmp_path / "data"
    corpus = tiny_corpus(["eng", "spa", "deu"])
    save_corpus(corpus, d)
    rows = []
    for _, r in corpus.iterrows():
        i = int(r["id"].rsplit(":", 1)[1])
        rows.append(
            dict(
                concept="water", lang=r["lang"], id=r["id"], label=int(i in (0, 3)), method="pivot"
            )
        )
        rows.append(
            dict(concept="music", lang=r["lang"], id=r["id"], label=int(i == 1), method="pivot")
        )
        # 'never' has no positive in deu: skipped there, scored elsewhere.
        rows.append(dict(concept="never", lang=r["lang"], id=r["id"], label=int(i == 5 and r["lang"] != "deu"),
                         method="lexicon"))  # fmt: skip
    pd.DataFrame(rows).assign(matched=True, base=True).to_parquet(d / "concepts.parquet")
    return d


def test_run_experts_tiny_series(tmp_path, tiny_series_dir):
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(str(tiny_series_dir))
    data = _data_dir(tmp_path)
    out = tmp_path / "run"
    st = ExpertSettings(top_k_store=5, min_positives=1)
    df = run_experts(series, data, out, st)
    assert set(df["step"]) == {0, 1, 2} and set(df["lang"]) == {"eng", "spa", "deu"}
    assert len(df.groupby(["step", "concept", "lang"])) == 3 * 3 * 3 - 3  # 'never' skipped in deu
    assert (df.groupby(["step", "concept", "lang"])["rank"].max() == 5).all()
    skipped = pd.read_parquet(out / "results" / "experts_skipped.parquet")
    assert skipped[["concept", "lang", "reason"]].values.tolist() == [
        ["never", "deu", "no positives"]
    ]
    meta = read_parquet_metadata(out / "results" / "experts.parquet")
    assert set(meta["fingerprints"]) == {"0", "1", "2"} and meta["data_hash"] and meta["skipped"]

    s = load_unit_scores(out, 2, "water", "spa")
    assert s.ap.shape == (sum(s.widths),) and s.layers == sorted(s.layers)
    top = df[(df.step == 2) & (df.concept == "water") & (df.lang == "spa")].sort_values("rank")
    assert s.top(5) == list(zip(top["layer"], top["unit"], strict=True))
    assert np.allclose(top["ap"], s.ap[[s.flat(la, u) for la, u in s.top(5)]])
    # AP of a unit equals sklearn on the pooled activations of the pool.
    from sklearn.metrics import average_precision_score

    from babelscope.activations.extract import extract_pooled
    from babelscope.checkpoints.series import load_checkpoint

    loaded = load_checkpoint(series.get(2))
    ids = sorted(f"tiny:spa:{i}" for i in range(8))
    from helpers import TINY_TEXTS

    texts = [TINY_TEXTS["spa"][int(i.rsplit(":", 1)[1])] for i in ids]
    pooled = extract_pooled(loaded.model, loaded.tokenizer, texts)
    la = s.layers[-1]
    y = np.array([int(i.rsplit(":", 1)[1]) in (0, 3) for i in ids])
    ref = average_precision_score(y, pooled.get(la)[:, 3])
    assert s.ap[s.flat(la, 3)] == pytest.approx(ref, abs=1e-6)

    with pytest.raises(BabelscopeError, match="concept 'never' has no expert scores in deu"):
        load_unit_scores(out, 2, "never", "deu")
    with pytest.raises(BabelscopeError, match="run `babelscope experts`"):
        load_unit_scores(out, 99, "water", "spa")

    # Resume: finished steps are not recomputed (the shards keep their mtime).
    shard = out / "results" / "ap" / "step-1" / "eng.npz"
    before = shard.stat().st_mtime_ns
    df2 = run_experts(series, data, out, st)
    assert shard.stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(df, df2)


def test_run_experts_bad_input(tmp_path, tiny_series_dir):
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(str(tiny_series_dir))
    data = _data_dir(tmp_path)
    with pytest.raises(BabelscopeError, match="no concept labels for swa"):
        run_experts(series, data, tmp_path / "r", ExpertSettings(languages=["swa"]))
    with pytest.raises(BabelscopeError, match="unknown concept"):
        run_experts(series, data, tmp_path / "r", ExpertSettings(concepts=["quark"]))
    with pytest.raises(BabelscopeError, match="lower min_positives"):
        run_experts(series, data, tmp_path / "r", ExpertSettings(min_positives=7))
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ExpertSettings(top_k=3)
