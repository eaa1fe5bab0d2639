"""LID probes (babelscope.analysis.probe): the core on arrays with known answers, the
by-sentence split, bad input, and the series driver end to end on tiny random models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.probe import (
    ProbeSettings,
    check_layers,
    probe_layer,
    probe_layers,
    sentence_splits,
    split_indices,
    summarize,
)
from babelscope.errors import BabelscopeError


def synthetic(n_lang=4, n_sent=24, tokens=8, d=16, seed=0):
    """Token vectors of n_lang languages: layer 'A' = language mean shift + noise, 'B' = noise.

    Every sentence also gets its own strong random offset (shared by its tokens) in both
    layers: a probe that let a sentence sit on both sides of the split could memorise it.
    """
    rng = np.random.default_rng(seed)
    n_rows = n_lang * n_sent * tokens
    lang = np.repeat([f"l{k}" for k in range(n_lang)], n_sent * tokens)
    sid = np.repeat(np.arange(n_lang * n_sent), tokens)
    shift = rng.normal(size=(n_lang, d)) * 3.0
    sent_offset = rng.normal(size=(n_lang * n_sent, d)) * 3.0
    lang_idx = np.repeat(np.arange(n_lang), n_sent * tokens)
    A = shift[lang_idx] + sent_offset[sid] + rng.normal(size=(n_rows, d))
    B = sent_offset[sid] + rng.normal(size=(n_rows, d))
    return {"A": A.astype(np.float32), "B": B.astype(np.float32)}, lang, sid


def _types(n_rows, vocab=60, seed=0):
    """Random token ids shared by all languages (no language signal in the types)."""
    return np.random.default_rng(seed + 100).integers(0, vocab, n_rows)


def test_known_answer_decodable_in_one_layer_not_the_other():
    X, lang, sid = synthetic()
    types = _types(len(lang))
    res_a = probe_layer(
        X["A"], lang, sid, token_types=types, seeds=(0, 1, 2), tokens_per_language=120
    )
    res_b = probe_layer(
        X["B"], lang, sid, token_types=types, seeds=(0, 1, 2), tokens_per_language=120
    )
    acc_a = np.mean([r["accuracy"] for r in res_a])
    acc_b = np.mean([r["accuracy"] for r in res_b])
    ctrl = np.mean([r["control_accuracy"] for r in res_a + res_b])
    assert res_a[0]["chance"] == 0.25 and res_a[0]["n_languages"] == 4
    assert acc_a > 0.9  # language is linearly decodable in layer A
    assert abs(acc_b - 0.25) < 0.12  # and not in layer B
    assert abs(ctrl - 0.25) < 0.12  # the control stays near chance in both
    sel_a = np.mean([r["selectivity"] for r in res_a])
    assert sel_a == pytest.approx(acc_a - np.mean([r["control_accuracy"] for r in res_a]))
    assert [r["seed"] for r in res_a] == [0, 1, 2]
    # the interval resamples test sentences and holds the mean accuracy
    assert (
        res_a[0]["ci_lo"] <= acc_a <= res_a[0]["ci_hi"]
        and res_a[0]["ci_hi"] - res_a[0]["ci_lo"] > 0
    )
    # the types carry no language: the lexical baseline is near chance
    assert abs(np.mean([r["lexical_accuracy"] for r in res_a]) - 0.25) < 0.12
    conf = np.asarray(res_a[0]["confusion"])
    assert (
        conf.shape == (4, 4)
        and conf.sum() == res_a[0]["n_test"]
        and np.trace(conf) > 0.9 * conf.sum()
    )


def test_type_control_can_fail_where_token_identity_decides():
    """An embedding-like layer (a vector per token type) makes the type-level control task
    learnable: far above 1/L. The old control (labels shuffled across sentences) could not
    tell: it sits at 1/L by construction."""
    rng = np.random.default_rng(0)
    _, lang, sid = synthetic()
    types = _types(len(lang))
    emb = rng.normal(size=(60, 16)) * 3
    X = (emb[types] + rng.normal(size=(len(lang), 16))).astype(np.float32)
    res = probe_layer(X, lang, sid, token_types=types, seeds=(0, 1), tokens_per_language=None)
    ctrl = np.mean([r["control_accuracy"] for r in res])
    assert ctrl > 0.25 + 0.3
    # language-specific types: the lexical baseline finds the language from identity alone
    lang_types = np.array([int(x[1:]) for x in lang]) * 15 + _types(len(lang), vocab=15)
    res = probe_layer(X, lang, sid, token_types=lang_types, seeds=(0,), tokens_per_language=None)
    assert res[0]["lexical_accuracy"] > 0.9


def test_without_types_the_controls_are_missing_not_made_up():
    X, lang, sid = synthetic()
    res = probe_layer(X["A"], lang, sid, seeds=(0,), tokens_per_language=120)
    assert np.isnan(res[0]["control_accuracy"]) and np.isnan(res[0]["lexical_accuracy"])


def test_split_is_by_sentence_and_balanced():
    _, lang, sid = synthetic(n_lang=3, n_sent=10, tokens=5)
    for seed in (0, 1, 2):
        ((train, test),) = split_indices(
            lang, sid, seed=seed, test_fraction=0.3, tokens_per_language=40
        )
        assert not set(sid[train]) & set(sid[test])  # no sentence on both sides
        # Balanced: every language has the same number of rows on each side.
        assert len(set(np.unique(lang[train], return_counts=True)[1])) == 1
        assert len(set(np.unique(lang[test], return_counts=True)[1])) == 1
        assert set(lang[test]) == set(lang[train]) == {"l0", "l1", "l2"}
    # Seeds re-draw the split.
    a = split_indices(lang, sid, seed=0, test_fraction=0.3)[0][1]
    b = split_indices(lang, sid, seed=1, test_fraction=0.3)[0][1]
    assert not np.array_equal(a, b)


def test_split_leak_would_be_visible():
    """Layer B has strong sentence offsets but no language signal: a token-level split would
    let the probe recognise sentences it saw in training; the by-sentence split does not."""
    from babelscope.analysis.probe import _fit_score

    X, lang, sid = synthetic(d=32)
    res = probe_layer(X["B"], lang, sid, seeds=(0,), tokens_per_language=None)
    assert res[0]["accuracy"] < 0.4
    perm = np.random.default_rng(0).permutation(len(lang))  # a leaky split by token
    tr, te = perm[: len(perm) * 4 // 5], perm[len(perm) * 4 // 5 :]
    correct, _ = _fit_score(
        X["B"][tr], lang[tr], X["B"][te], lang[te], C=1.0, max_iter=300, tol=1e-4
    )
    assert correct / len(te) > 0.45  # well above chance (0.25): the probe memorised sentences


def test_kfold_tests_every_sentence_once():
    _, lang, sid = synthetic(n_lang=3, n_sent=10, tokens=4)
    splits = split_indices(lang, sid, seed=0, folds=5)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(len(lang)))  # all rows, each once
    for train, test in splits:
        assert not set(sid[train]) & set(sid[test])
    masks = sentence_splits(np.repeat([0, 1], 10), np.random.default_rng(0), folds=5)
    assert (np.sum(masks, axis=0) == 1).all()


def test_kfold_and_sentence_level_probe():
    X, lang, sid = synthetic(n_lang=3, n_sent=20, tokens=6)
    res = probe_layer(X["A"], lang, sid, seeds=(0,), folds=4)
    assert res[0]["n_test"] == len(lang) and res[0]["accuracy"] > 0.9
    # Sentence level: one (mean-pooled) row per sentence.
    pooled = np.stack([X["A"][sid == s].mean(0) for s in np.unique(sid)])
    slang = np.array([lang[sid == s][0] for s in np.unique(sid)])
    res = probe_layer(pooled, slang, np.arange(len(slang)), seeds=(0, 1))
    assert all(r["accuracy"] > 0.9 for r in res)
    assert res[0]["n_test"] == 3 * 4  # 20% of 20 sentences per language


def test_probe_layers_parallel_matches_serial():
    X, lang, sid = synthetic(n_lang=3, n_sent=12, tokens=4)
    settings = ProbeSettings(seeds=[0, 1], tokens_per_language=40)
    serial = probe_layers({0: X["A"], 1: X["B"]}, lang, sid, settings, n_jobs=1)
    parallel = probe_layers({0: X["A"], 1: X["B"]}, lang, sid, settings, n_jobs=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial["layer"]) == [0, 0, 1, 1]
    s = summarize(serial.assign(step=5))
    assert list(s.columns[:3]) == ["step", "layer", "accuracy"] and len(s) == 2
    assert (s["n_seeds"] == 2).all()


def test_bad_input_is_one_line():
    X, lang, sid = synthetic(n_lang=2, n_sent=4, tokens=3)
    with pytest.raises(BabelscopeError, match="at least two languages"):
        probe_layer(X["A"][lang == "l0"], lang[lang == "l0"], sid[lang == "l0"])
    keep = (lang == "l0") | (sid == sid[lang == "l1"][0])  # l1 keeps one sentence
    with pytest.raises(BabelscopeError, match=r"language l1 has 1 sentence"):
        probe_layer(X["A"][keep], lang[keep], sid[keep])
    with pytest.raises(BabelscopeError, match=r"language l0 has 4 sentence.*at least 5"):
        probe_layer(X["A"], lang, sid, folds=5)
    with pytest.raises(BabelscopeError, match=r"layer 7 is out of range.*0\.\.4"):
        check_layers([0, 7], 5)
    assert check_layers(None, 3) == [0, 1, 2]
    with pytest.raises(ValueError):
        ProbeSettings(bogus=1)
    with pytest.raises(ValueError):
        ProbeSettings(level="word")


# --------------------------------------------------------------------------- over a series


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from babelscope.corpora.corpus import save_corpus
    from helpers import tiny_corpus

    d = tmp_path_factory.mktemp("data")
    save_corpus(tiny_corpus(), d, {"sources": ["tiny"]})
    return d


def tiny_settings(**kw) -> ProbeSettings:
    base = dict(sentences_per_language=8, tokens_per_language=40, seeds=[0, 1], n_jobs=1)
    return ProbeSettings(**(base | kw))


def test_run_probe_end_to_end_with_provenance_and_resume(
    tiny_series_dir, tiny_data, tmp_path, monkeypatch
):
    from babelscope.analysis import probe as probe_mod
    from babelscope.checkpoints.series import resolve_series
    from babelscope.corpora.corpus import data_hash
    from babelscope.io import read_parquet_metadata

    series = resolve_series(str(tiny_series_dir))
    settings = tiny_settings()
    df = probe_mod.run_probe(series, tiny_data, tmp_path, settings)
    path = tmp_path / "results" / "probe.parquet"
    back = pd.read_parquet(path)
    assert list(back.columns) == probe_mod.RESULT_COLUMNS
    pd.testing.assert_frame_equal(back, df)
    assert sorted(back["step"].unique()) == [0, 1, 2]
    assert sorted(back["layer"].unique()) == [0, 1, 2]  # embeddings + 2 blocks
    assert len(back) == 3 * 3 * 2  # steps x layers x seeds
    assert (back["n_languages"] == 4).all() and (back["chance"] == 0.25).all()
    # the type-level control on a real (tiny random) model: at the embedding layer a vector
    # is its token, so the control task is learnable for the types seen in training
    emb = back[back["layer"] == 0]
    assert emb["control_accuracy"].mean() > 0.25 + 0.1, emb["control_accuracy"].tolist()
    assert back["lexical_accuracy"].notna().all() and (back["ci_lo"] <= back["accuracy"]).all()
    conf = pd.read_parquet(tmp_path / "results" / "probe_confusion.parquet")
    assert set(conf["step"]) == {0, 1, 2} and conf["count"].sum() == back["n_test"].sum()
    assert back["accuracy"].between(0, 1).all() and back["control_accuracy"].between(0, 1).all()
    assert np.allclose(back["selectivity"], back["accuracy"] - back["control_accuracy"])
    meta = read_parquet_metadata(path)
    assert meta["stage"] == "probe"
    assert meta["data_hash"] == data_hash(tiny_data)
    assert meta["settings"] == settings.model_dump()
    assert set(meta["fingerprints"]) == {"0", "1", "2"}
    assert len(set(meta["fingerprints"].values())) == 3
    assert meta["languages"] == ["deu", "eng", "spa", "zho"]

    # Resume: finished steps are reused, nothing is loaded again.
    def no_load(*a, **k):
        raise AssertionError("a finished checkpoint was loaded again")

    monkeypatch.setattr("babelscope.checkpoints.series.load_checkpoint", no_load)
    again = probe_mod.run_probe(
        series, tiny_data, tmp_path, tiny_settings(n_jobs=2)
    )  # n_jobs: not in the key
    pd.testing.assert_frame_equal(again, df)
    with pytest.raises(AssertionError, match="loaded again"):  # other settings: recomputed
        probe_mod.run_probe(series, tiny_data, tmp_path, tiny_settings(C=0.5))


def test_run_probe_sentence_level_and_layers(tiny_series_dir, tiny_data, tmp_path):
    from babelscope.analysis.probe import run_probe
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(str(tiny_series_dir))
    series.checkpoints = series.checkpoints[:1]
    df = run_probe(
        series, tiny_data, tmp_path, tiny_settings(level="sentence", layers=[0, 2], seeds=[0])
    )
    assert sorted(df["layer"]) == [0, 2]
    # 8 sentences per language, 20% tested: 2 per language.
    assert (df["n_test"] == 4 * 2).all() and (df["n_train"] == 4 * 6).all()


def test_run_probe_bad_input(tiny_series_dir, tiny_data, tmp_path):
    from babelscope.analysis.probe import run_probe
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(str(tiny_series_dir))
    with pytest.raises(BabelscopeError, match=r"layer 5 is out of range.*0\.\.2"):
        run_probe(series, tiny_data, tmp_path, tiny_settings(layers=[0, 5]))
    with pytest.raises(BabelscopeError, match=r"language deu has 8 sentences.*asks for 9"):
        run_probe(series, tiny_data, tmp_path, tiny_settings(sentences_per_language=9))
    with pytest.raises(BabelscopeError, match="at least two languages.*eng"):
        run_probe(series, tiny_data, tmp_path, tiny_settings(languages=["eng"]))
    assert not (tmp_path / "results" / "probe.parquet").exists()


def test_cli_probe(tiny_series_dir, tiny_data, tmp_path, capsys):
    from babelscope.cli import main

    out = tmp_path / "run"
    args = ["probe", "--series", str(tiny_series_dir), "--data", str(tiny_data), "--out", str(out),
            "--sentences-per-language", "6", "--tokens-per-language", "30", "--seeds", "0",
            "--layers", "0,2", "--languages", "eng,zho", "--n-jobs", "1"]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0
    df = pd.read_parquet(out / "results" / "probe.parquet")
    assert sorted(df["layer"].unique()) == [0, 2] and (df["n_languages"] == 2).all()
    assert (out / "figures" / "probe_heatmap.png").exists() and (
        out / "figures" / "probe_by_layer.svg"
    ).exists()
    assert "LID probe accuracy" in capsys.readouterr().out

    for bad, msg in [(["--layers", "0,9"], "layer 9 is out of range"), (["--layers", "x"], "not an integer"),
                     (["--level", "word"], "token or sentence"), (["--folds", "1"], "folds")]:  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(args + bad)
        assert e.value.code == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and msg in errors[0], err


def test_select_sentences_is_deterministic_heldout_first():
    from babelscope.analysis.probe import select_sentences
    from helpers import tiny_corpus

    corpus = tiny_corpus()
    a = select_sentences(corpus, ["eng", "zho"], 3)
    b = select_sentences(corpus.sample(frac=1, random_state=1), ["eng", "zho"], 3)
    assert a["id"].tolist() == b["id"].tolist()  # row order of the corpus does not matter
    assert (
        a["split"] == "heldout"
    ).sum() == 4  # both held-out sentences of each language come first
    assert a.groupby("lang").size().to_dict() == {"eng": 3, "zho": 3}
