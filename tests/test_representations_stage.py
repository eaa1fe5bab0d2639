"""The representations stage over a tiny series: tables, provenance, resume, errors, CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from babelscope.analysis.representations.stage import (
    LENS_COLUMNS,
    RESULT_COLUMNS,
    SimilaritySettings,
    parallel_items,
    run_similarity,
)
from babelscope.errors import BabelscopeError
from helpers import tiny_corpus

MEASURES = {"retrieval", "retrieval_centred", "cka", "margin", "margin_centred",
            "lens_own", "lens_pivot", "lens_other", "lens_shared", "lens_unseen"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from babelscope.corpora.corpus import save_corpus

    d = tmp_path_factory.mktemp("data")
    save_corpus(tiny_corpus(), d, {"sources": ["tiny"]})
    return d


def settings(**kw) -> SimilaritySettings:
    return SimilaritySettings(**({"items": 8, "n_permutations": 20, "n_boot": 100} | kw))


def test_parallel_items_keep_distinct_translations_in_every_language():
    corpus = tiny_corpus()
    # item 0 untranslated in spa (same text as eng): it must not be used
    corpus.loc[(corpus["lang"] == "spa") & (corpus["align_id"] == "tiny:0"), "text"] = (
        "The water in the river is cold."
    )
    items = parallel_items(corpus, ["eng", "spa", "zho"], 5, seed=0)
    assert list(items.columns) == ["eng", "spa", "zho"] and len(items) == 5
    assert "tiny:0" not in items.index
    assert items.equals(parallel_items(corpus, ["eng", "spa", "zho"], 5, seed=0))
    with pytest.raises(BabelscopeError, match="no parallel text in fra"):
        parallel_items(corpus, ["eng", "fra"], 5)


def test_run_similarity_tables_provenance_and_resume(
    tiny_series_dir, tiny_data, tmp_path, monkeypatch
):
    from babelscope.checkpoints.series import resolve_series
    from babelscope.corpora.corpus import data_hash
    from babelscope.io import read_parquet_metadata

    series = resolve_series(str(tiny_series_dir))
    df, lens = run_similarity(series, tiny_data, tmp_path, settings())
    res = tmp_path / "results"
    back = pd.read_parquet(res / "similarity.parquet")
    assert list(back.columns) == RESULT_COLUMNS
    pd.testing.assert_frame_equal(back, df)
    assert set(back["measure"]) == MEASURES
    assert sorted(back["step"].unique()) == [0, 1, 2] and sorted(back["layer"].unique()) == [
        0,
        1,
        2,
    ]
    ret = back[back["measure"] == "retrieval"]
    assert (ret["chance"] == 1 / 8).all() and (ret["n_pairs"] == 12).all()
    assert back["value"].notna().all()
    parts = back[back["measure"].str.startswith("lens_")].groupby(["step", "layer"])["value"].sum()
    assert ((parts - 1).abs() < 1e-6).all()  # the lens shares add up to one
    assert list(lens.columns) == LENS_COLUMNS
    assert set(lens["input_lang"]) == {"deu", "eng", "spa", "zho"}
    meta = read_parquet_metadata(res / "similarity.parquet")
    assert meta["stage"] == "similarity" and meta["data_hash"] == data_hash(tiny_data)
    assert set(meta["fingerprints"]) == {"0", "1", "2"} and len(meta["items"]) == 8
    assert read_parquet_metadata(res / "similarity_lens.parquet")["key"] == meta["key"]

    def no_load(*a, **k):
        raise AssertionError("a finished checkpoint was loaded again")

    monkeypatch.setattr("babelscope.checkpoints.series.load_checkpoint", no_load)
    again, _ = run_similarity(series, tiny_data, tmp_path, settings())
    pd.testing.assert_frame_equal(again, df)
    with pytest.raises(AssertionError, match="loaded again"):  # other settings: recomputed
        run_similarity(series, tiny_data, tmp_path, settings(items=6))


def test_run_similarity_options_and_errors(tiny_series_dir, tiny_data, tmp_path):
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(str(tiny_series_dir))
    series.checkpoints = series.checkpoints[:1]
    df, lens = run_similarity(series, tiny_data, tmp_path, settings(lens=False, layers=[0, 2]))
    assert sorted(df["layer"].unique()) == [0, 2] and not df["measure"].str.startswith("lens").any()
    assert lens.empty
    with pytest.raises(BabelscopeError, match="pivot"):
        run_similarity(series, tiny_data, tmp_path, settings(languages=["spa", "zho"]))
    with pytest.raises(BabelscopeError, match="layer"):
        run_similarity(series, tiny_data, tmp_path / "x", settings(layers=[7]))


def test_cli_similarity(tiny_series_dir, tiny_data, tmp_path, capsys):
    from babelscope.cli import main

    out = tmp_path / "run"
    args = ["similarity", "--series", str(tiny_series_dir), "--data", str(tiny_data), "--out", str(out),
            "--items", "6", "--permutations", "10", "--layers", "0,2"]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0
    df = pd.read_parquet(out / "results" / "similarity.parquet")
    assert sorted(df["layer"].unique()) == [0, 2]
    assert (df.loc[df["measure"] == "retrieval", "n_items"] == 6).all()
    assert (df.loc[df["measure"] == "lens_own", "n_items"] == 3 * 6).all()  # non-pivot inputs
    assert (out / "figures" / "representations_heatmap.png").exists()
    assert "representations" in capsys.readouterr().out
    for bad, msg in [(["--items", "2"], "items"), (["--pivot", "xx"], "xx")]:
        with pytest.raises(SystemExit) as e:
            main(args + bad)
        assert e.value.code == 2
        errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and msg in errors[0]


def test_control_language_rows(tiny_series_dir, tmp_path):
    """A cipher of English (eng~x) is retrieved from English alone in rows of its own."""
    from babelscope.checkpoints.series import resolve_series
    from babelscope.corpora.corpus import save_corpus

    corpus = tiny_corpus(["eng", "spa"])
    ctrl = corpus[corpus["lang"] == "eng"].copy()
    ctrl["lang"] = "eng~x"
    ctrl["id"] = ctrl["id"].str.replace("eng", "engx")
    ctrl["text"] = ctrl["text"].str.upper()
    d = tmp_path / "data"
    save_corpus(pd.concat([corpus, ctrl], ignore_index=True), d, {"sources": ["tiny"]})
    series = resolve_series(str(tiny_series_dir))
    series.checkpoints = series.checkpoints[:1]
    df, _ = run_similarity(series, d, tmp_path / "out", settings(layers=[0]))
    ctl = df[df["measure"].str.endswith("_control")]
    assert set(ctl["measure"]) == {"retrieval_control", "retrieval_centred_control"}
    assert (ctl["n_pairs"] == 2).all() and (ctl["chance"] == 1 / 8).all()
