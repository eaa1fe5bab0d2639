"""The steering stage on a tiny series: the table's contract, baselines, resume, errors, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from babelscope.activations.neurons import hook_points
from babelscope.analysis.intervention import Intervention
from babelscope.analysis.steering import COLUMNS, SteerSettings, run_steering, summarize
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata

LANGS = ["eng", "spa", "deu", "zho"]
# Positive sentences (index in helpers.TINY_TEXTS) of each concept, in every language.
POSITIVES = {"water": [0, 3], "music": [1]}


def write_data(root: Path) -> Path:
    """A data dir: the tiny corpus and concept labels over each language's 8 sentences."""
    from babelscope.corpora.corpus import save_corpus
    from babelscope.io import write_parquet_atomic
    from helpers import tiny_corpus

    corpus = tiny_corpus(LANGS)
    save_corpus(corpus, root)
    rows = [
        dict(concept=c, lang=r.lang, id=r.id, label=int(int(r.id.rsplit(":", 1)[1]) in pos),
             method="lexicon")
        for c, pos in POSITIVES.items() for r in corpus.itertuples()
    ]  # fmt: skip
    write_parquet_atomic(
        pd.DataFrame(rows).assign(matched=True, base=True), root / "concepts.parquet"
    )
    return root


def write_fake_experts(run: Path, series_dir: Path, steps, langs=("spa", "deu")):
    """Experts shards and experts.parquet as babelscope.analysis.experts writes them."""
    from babelscope.analysis import experts as ex
    from babelscope.checkpoints.series import load_checkpoint, resolve_series
    from babelscope.io import provenance, write_parquet_atomic

    concepts = list(POSITIVES)
    series = resolve_series(series_dir)
    frames = []
    for ckpt in series.checkpoints:
        if ckpt.step not in steps:
            continue
        points = hook_points(load_checkpoint(ckpt).model, "mlp")
        n = sum(p.width for p in points)
        for lang in langs:
            rng = np.random.default_rng([ckpt.step, len(lang)])
            arrays = {
                "ap": rng.random((len(concepts), n)).astype(np.float32),
                "on_p50": rng.normal(3, 1, (len(concepts), n)).astype(np.float32),
                "on_p90": rng.normal(5, 1, (len(concepts), n)).astype(np.float32),
                "off_mean": rng.normal(0, 0.1, (len(concepts), n)).astype(np.float32),
            }
            path = ex.save_shard(
                run, ckpt.step, lang, arrays, concepts=concepts, layers=[p.layer for p in points],
                widths=[p.width for p in points], n_pos=np.full(len(concepts), 2),
                n_neg=np.full(len(concepts), 6),
            )  # fmt: skip
            frames.append(ex.top_table(ckpt.step, lang, ex.read_shard(path), 50))
    df = pd.concat(frames, ignore_index=True)
    meta = provenance("experts", settings=ex.ExpertSettings().model_dump())
    write_parquet_atomic(df, run / "results" / ex.EXPERTS_FILE, metadata=meta)
    return series


SETTINGS = dict(seeds=4, max_new_tokens=6, k=[3, 6], steps=[0, 2], other_lang="deu",
                random_draws=2, value_sentences=4)  # fmt: skip


@pytest.fixture(scope="module")
def steered(tiny_series_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    data = write_data(tmp_path_factory.mktemp("data"))
    write_fake_experts(run, tiny_series_dir, steps=(0, 2))
    settings = SteerSettings(**SETTINGS)
    df = run_steering(tiny_series_dir, data, run, settings)
    return run, data, settings, df


def test_table_contract(steered):
    run, _, settings, df = steered
    assert list(df.columns) == COLUMNS
    per_step_concept = 4 + 2 * (4 + 4 + 4 + 4)  # none; per K: experts, random (2 x 2), other x2
    assert len(df) == 2 * 2 * per_step_concept
    assert set(df["condition"]) == {"experts", "none", "random", "other_concept", "other_lang"}
    assert set(df.loc[df["condition"] == "none", "k"]) == {0}
    assert set(df.loc[df["condition"] != "none", "k"]) == {3, 6}
    rnd = df[df["condition"] == "random"]
    # split seeds: every seed exactly once per (step, concept, K), spread over the draws
    per_job = rnd.groupby(["step", "concept", "k"])["seed"].apply(sorted)
    assert len(per_job) == 8 and all(v == [0, 1, 2, 3] for v in per_job)
    assert set(rnd["draw"]) == {0, 1} and (df.loc[df["condition"] != "random", "draw"] == -1).all()
    other = df[df["condition"] == "other_concept"]
    assert set(zip(other["concept"], other["forced_from"], strict=True)) == {
        ("water", "music/spa"), ("music", "water/spa")}  # fmt: skip
    assert set(df.loc[df["condition"] == "other_lang", "forced_from"]) == {"water/deu", "music/deu"}
    assert df["fluency"].notna().sum() == (df["n_tokens"] > 0).sum()
    assert (df.loc[df["n_tokens"] > 0, "fluency"] > 0).all()
    # The unforced outputs do not depend on the concept.
    none = df[df["condition"] == "none"].sort_values(["step", "seed"])
    assert (
        none[none["concept"] == "water"]["text"].tolist()
        == none[none["concept"] == "music"]["text"].tolist()
    )
    meta = read_parquet_metadata(run / "results" / "steering.parquet")
    assert meta["stage"] == "steering" and meta["settings"]["k"] == [3, 6]
    assert set(meta["fingerprints"]) == {"0", "2"} and meta["unit_kind"] == "mlp"
    assert meta["concept_choice"]["held_out_ap"] is False
    iv = Intervention.load(run / "results" / "interventions" / "step-0_water_random_k6_d1.json")
    assert (iv.k, iv.condition, iv.mode, iv.meta["draw"]) == (6, "random", "set", 1)
    s = summarize(df)
    assert set(s["condition"]) == set(df["condition"])


def test_resumes_without_steering_again(steered, tiny_series_dir, monkeypatch):
    run, data, settings, df = steered
    import babelscope.analysis.steering.stage as st

    def boom(*a, **k):
        raise AssertionError("a finished checkpoint was steered again")

    monkeypatch.setattr(st, "steer_checkpoint", boom)
    again = run_steering(tiny_series_dir, data, run, settings)
    pd.testing.assert_frame_equal(again, df)
    rebatched = run_steering(
        tiny_series_dir, data, run, settings.model_copy(update={"batch_size": 3})
    )
    pd.testing.assert_frame_equal(rebatched, df)


def test_errors(steered, tiny_series_dir, tmp_path):
    run, data, settings, _ = steered
    with pytest.raises(BabelscopeError, match="no experts in"):
        run_steering(tiny_series_dir, data, tmp_path, settings)
    with pytest.raises(BabelscopeError, match="concept 'fire' in 'spa'"):
        run_steering(tiny_series_dir, data, run, settings.model_copy(update={"concepts": ["fire"]}))
    with pytest.raises(BabelscopeError, match="source language 'eng'"):
        run_steering(tiny_series_dir, data, run, settings.model_copy(update={"source_lang": "eng"}))
    with pytest.raises(BabelscopeError, match=r"step\(s\) \[1\]"):
        run_steering(tiny_series_dir, data, run,
                     settings.model_copy(update={"steps": None, "concepts": ["water"]}))  # fmt: skip
    with pytest.raises(BabelscopeError, match="not in the series"):
        run_steering(tiny_series_dir, data, run, settings.model_copy(update={"steps": [5]}))
    with pytest.raises(BabelscopeError, match="pass --data"):
        run_steering(tiny_series_dir, None, run, settings)


def test_cli(steered, tiny_series_dir):
    from typer.testing import CliRunner

    from babelscope.cli import app

    run, data, _, _ = steered
    base = ["steer", "--series", str(tiny_series_dir), "--out", str(run), "--data", str(data),
            "--seeds", "2", "--other-lang", "deu", "--value-sentences", "4"]  # fmt: skip
    cases = {
        ("--statistic", "median"): "--statistic 'median'",
        ("--concept", "fire"): "no experts were computed for concept 'fire'",
        ("--source-lang", "swa"): "no experts were computed for source language 'swa'",
        ("--k", "0"): "--k",
    }
    runner = CliRunner()
    for extra, msg in cases.items():
        res = runner.invoke(app, [*base, "--steps", "0", *extra])
        assert isinstance(res.exception, BabelscopeError), res.output
        assert msg in str(res.exception) and "\n" not in str(res.exception)
    res = runner.invoke(app, [*base, "--steps", "0,2", "--k", "2,4", "--max-new-tokens", "4",
                              "--random-draws", "2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (run / "figures" / "steering_languages.png").exists()
    assert (run / "figures" / "steering_dose_response.png").exists()
    out = pd.read_parquet(run / "results" / "steering.parquet")
    assert sorted(out["k"].unique()) == [0, 2, 4]


def test_a_model_that_bypasses_the_forced_module_fails_and_writes_nothing(
    steered, tiny_series_dir, tmp_path, monkeypatch
):
    """Forcing units the model never computes through their module would steer nothing:
    the stage stops with one line naming the module, and leaves no result behind."""
    from transformers.models.xglm.modeling_xglm import XGLMDecoderLayer

    from helpers_models import bypass

    _, data, settings, _ = steered
    run = tmp_path / "run"
    write_fake_experts(run, tiny_series_dir, steps=(0,))
    before = {p for p in run.rglob("*") if p.is_file()}
    bypass(monkeypatch, XGLMDecoderLayer, "fc2")
    with pytest.raises(
        BabelscopeError, match=r"hook point model\.layers\.\d\.fc2 was never called"
    ):
        run_steering(tiny_series_dir, data, run, settings.model_copy(update={"steps": [0]}))
    assert {p for p in run.rglob("*") if p.is_file()} == before  # no shard, cache, intervention
