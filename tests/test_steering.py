"""Forced generation: seeded sampling, KV cache, batching, the whole stage and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from babelscope.activations.neurons import hook_points
from babelscope.analysis.intervention import Intervention
from babelscope.analysis.steering import (
    SteerSettings,
    generate_texts,
    run_steering,
    sample_next,
    sample_tokens,
    start_ids,
    summarize,
)
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata


@pytest.fixture(scope="module", params=["gpt2", "xglm"])
def tiny(request, tmp_path_factory):
    from helpers import make_tiny_model

    model, tok = make_tiny_model(tmp_path_factory.mktemp(request.param), family=request.param)
    return model.eval(), tok


def _forcing(model) -> Intervention:
    width = hook_points(model, "mlp")[0].width
    return Intervention([(la, u, 4.0) for la in (0, 1) for u in range(0, width, 5)])


def test_same_tokens_with_and_without_cache(tiny):
    model, tok = tiny
    p = start_ids(tok)
    kw = dict(max_new_tokens=20, eos_token_id=None)
    assert sample_tokens(model, p, range(6), use_cache=True, **kw) == sample_tokens(
        model, p, range(6), use_cache=False, **kw
    )
    with _forcing(model).attach(model):
        cached = sample_tokens(model, p, range(6), use_cache=True, **kw)
        plain = sample_tokens(model, p, range(6), use_cache=False, **kw)
    assert cached == plain


def test_same_seed_same_text_alone_or_batched(tiny):
    model, tok = tiny
    kw = dict(max_new_tokens=16)
    batched = generate_texts(model, tok, list(range(8)), **kw)
    assert generate_texts(model, tok, [5], **kw) == [batched[5]]
    assert generate_texts(model, tok, list(range(8)), batch_size=3, **kw) == batched
    assert generate_texts(model, tok, list(range(8)), **kw) == batched  # and again
    assert len(set(batched)) > 1  # different seeds, different texts
    with _forcing(model).attach(model):
        forced = generate_texts(model, tok, list(range(8)), **kw)
        assert generate_texts(model, tok, [2, 7], **kw) == [forced[2], forced[7]]
    assert forced != batched


def test_eos_cuts_a_row_without_touching_others(tiny):
    model, tok = tiny
    p = start_ids(tok)
    full = sample_tokens(model, p, range(4), max_new_tokens=12, stop_at_eos=False)
    # Pretend the 4th token of seed 1 is the EOS: only that row is cut.
    eos = full[1][3]
    cut = sample_tokens(model, p, range(4), max_new_tokens=12, eos_token_id=eos)
    for row, whole in zip(cut, full, strict=True):
        expect = whole[: whole.index(eos)] if eos in whole else whole
        assert row == expect


def test_sample_next_rules():
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0], [2.0, 2.0, 0.0, 0.0]])
    gens = lambda: [torch.Generator().manual_seed(s) for s in (0, 1)]  # noqa: E731
    assert sample_next(logits, gens(), temperature=0.0, top_p=0.9).tolist() == [1, 0]
    # A tiny nucleus keeps only the most probable token (ties: the lower id).
    assert sample_next(logits, gens(), temperature=1.0, top_p=1e-6).tolist() == [1, 0]
    # Row independence: a row's draw does not depend on the other rows.
    one = sample_next(logits[1:], gens()[1:], temperature=1.0, top_p=0.9)
    two = sample_next(logits, gens(), temperature=1.0, top_p=0.9)
    assert one.item() == two[1].item()
    # Many draws follow the nucleus distribution's support.
    g = [torch.Generator().manual_seed(0)]
    seen = {sample_next(logits[:1], g, 1.0, 0.9).item() for _ in range(200)}
    assert seen == {1, 2}  # p = .84, .11 (within 0.9), the rest cut


def test_start_ids(tmp_path):
    from tokenizers import processors

    from helpers import make_tokenizer

    tok = make_tokenizer(tmp_path / "t")
    assert start_ids(tok) == [tok.eos_token_id]  # adds no BOS: explicit </s>
    ids = start_ids(tok, "The water")
    assert ids[0] == tok.eos_token_id and len(ids) > 1
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    assert start_ids(tok) == [bos]  # the tokenizer's own BOS
    assert start_ids(tok, "The water")[:1] == [bos]
    assert start_ids(tok, "The water").count(bos) == 1


def test_settings():
    s = SteerSettings()
    assert (s.source_lang, s.seeds, s.max_new_tokens, s.temperature, s.top_p) == (
        "spa",
        100,
        64,
        0.8,
        0.9,
    )
    assert s.conditions == ["experts", "none", "random"]
    assert s.resolve_k(98_304) == 500  # BLOOM-560m: 24 x 4096
    assert s.resolve_k(2048) == 205  # small model: 10%
    assert s.resolve_k(10) == 1
    assert SteerSettings(k=7).resolve_k(100) == 7
    assert SteerSettings(statistic="1.5").statistic == 1.5
    with pytest.raises(BabelscopeError, match="larger than the 100 units"):
        SteerSettings(k=101).resolve_k(100)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown forcing statistic"):
        SteerSettings(statistic="mean")
    with pytest.raises(ValidationError, match="extra"):
        SteerSettings(seed=3)
    with pytest.raises(ValidationError, match="unknown language code"):
        SteerSettings(source_lang="es")


# -- the whole stage on a tiny series --------------------------------------------------------


def write_fake_experts(run: Path, series_dir: Path, steps, concepts=("water", "music"), lang="spa"):
    """Experts shards and experts.parquet as babelscope.analysis.experts writes them."""
    from babelscope.analysis import experts as ex
    from babelscope.checkpoints.series import load_checkpoint, resolve_series
    from babelscope.io import provenance, write_parquet_atomic

    series = resolve_series(series_dir)
    frames = []
    for ckpt in series.checkpoints:
        if ckpt.step not in steps:
            continue
        points = hook_points(load_checkpoint(ckpt).model, "mlp")
        n = sum(p.width for p in points)
        rng = np.random.default_rng(ckpt.step)
        arrays = {
            "ap": rng.random((len(concepts), n)).astype(np.float32),
            "on_p50": rng.normal(3, 1, (len(concepts), n)).astype(np.float32),
            "on_p90": rng.normal(5, 1, (len(concepts), n)).astype(np.float32),
            "off_mean": rng.normal(0, 0.1, (len(concepts), n)).astype(np.float32),
        }
        path = ex.save_shard(
            run, ckpt.step, lang, arrays, concepts=list(concepts), layers=[p.layer for p in points],
            widths=[p.width for p in points], n_pos=np.full(len(concepts), 5), n_neg=np.full(len(concepts), 20),
        )  # fmt: skip
        frames.append(ex.top_table(ckpt.step, lang, ex.read_shard(path), 50))
    df = pd.concat(frames, ignore_index=True)
    meta = provenance("experts", settings=ex.ExpertSettings().model_dump())
    write_parquet_atomic(df, run / "results" / ex.EXPERTS_FILE, metadata=meta)
    return series


@pytest.fixture(scope="module")
def steered(tiny_series_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    write_fake_experts(run, tiny_series_dir, steps=(0, 2))
    settings = SteerSettings(seeds=4, max_new_tokens=8, k=6, steps=[0, 2])
    df = run_steering(tiny_series_dir, None, run, settings)
    return run, settings, df


def test_run_steering_table(steered):
    run, settings, df = steered
    assert list(df.columns) == [
        "step", "concept", "source_lang", "condition", "k", "statistic", "seed", "text",
        "detected_lang", "confidence", "lid_method", "concept_hit",
    ]  # fmt: skip
    assert len(df) == 2 * 2 * 3 * 4  # steps x concepts x conditions x seeds
    assert set(df["condition"]) == {"experts", "none", "random"}
    assert (df["k"] == 6).all() and (df["source_lang"] == "spa").all()
    assert df["detected_lang"].map(lambda x: isinstance(x, str) and len(x) >= 2).all()
    # The unforced outputs do not depend on the concept.
    none = df[df["condition"] == "none"]
    a, b = (
        none[none["concept"] == c].sort_values(["step", "seed"])["text"].tolist()
        for c in ("water", "music")
    )
    assert a == b
    forced = df[(df["condition"] == "experts") & (df["concept"] == "water")].sort_values(
        ["step", "seed"]
    )
    assert (
        forced["text"].tolist()
        != none[none["concept"] == "water"].sort_values(["step", "seed"])["text"].tolist()
    )
    meta = read_parquet_metadata(run / "results" / "steering.parquet")
    assert meta["stage"] == "steering" and meta["settings"]["k"] == 6
    assert set(meta["fingerprints"]) == {"0", "2"} and meta["unit_kind"] == "mlp"
    saved = sorted(p.name for p in (run / "results" / "interventions").glob("*.json"))
    assert "step-0_water_spa_experts.json" in saved and "step-2_music_spa_random.json" in saved
    iv = Intervention.load(run / "results" / "interventions" / "step-0_water_spa_experts.json")
    assert (iv.k, iv.concept, iv.step, iv.statistic) == (6, "water", 0, "on_p50")
    s = summarize(df)
    assert len(s) == 2 * 3 and s["outputs"].eq(8).all()


def test_run_steering_reproducible_and_resumes(steered, tiny_series_dir, monkeypatch):
    run, settings, df = steered
    import babelscope.analysis.steering as st

    def boom(*a, **k):
        raise AssertionError("a finished checkpoint was steered again")

    monkeypatch.setattr(st, "steer_checkpoint", boom)
    again = run_steering(tiny_series_dir, None, run, settings)
    pd.testing.assert_frame_equal(again, df)
    # Batching does not change the text, so it does not invalidate finished checkpoints.
    rebatched = run_steering(
        tiny_series_dir, None, run, settings.model_copy(update={"batch_size": 3})
    )
    pd.testing.assert_frame_equal(rebatched, df)
    one = run_steering(tiny_series_dir, None, run, settings.model_copy(update={"steps": [2]}))
    pd.testing.assert_frame_equal(one, df[df["step"] == 2].reset_index(drop=True))


def test_run_steering_errors(steered, tiny_series_dir, tmp_path):
    run, settings, _ = steered
    with pytest.raises(BabelscopeError, match="no experts in"):
        run_steering(tiny_series_dir, None, tmp_path, settings)
    with pytest.raises(BabelscopeError, match="concept 'fire' in 'spa'"):
        run_steering(tiny_series_dir, None, run, settings.model_copy(update={"concepts": ["fire"]}))
    with pytest.raises(BabelscopeError, match="source language 'deu'"):
        run_steering(tiny_series_dir, None, run, settings.model_copy(update={"source_lang": "deu"}))
    with pytest.raises(BabelscopeError, match=r"step\(s\) \[1\]"):
        run_steering(
            tiny_series_dir,
            None,
            run,
            settings.model_copy(update={"steps": None, "concepts": ["water"]}),
        )
    with pytest.raises(BabelscopeError, match="larger than the 128 units"):
        run_steering(tiny_series_dir, None, run, settings.model_copy(update={"k": 129}))
    with pytest.raises(BabelscopeError, match="not in the series"):
        run_steering(tiny_series_dir, None, run, settings.model_copy(update={"steps": [5]}))


def test_cli_one_line_errors(steered, tiny_series_dir):
    from typer.testing import CliRunner

    from babelscope.cli import app

    run, _, _ = steered
    base = ["steer", "--series", str(tiny_series_dir), "--out", str(run), "--seeds", "2"]
    cases = {
        ("--statistic", "median"): "unknown forcing statistic 'median'",
        ("--concept", "fire"): "no experts were computed for concept 'fire'",
        ("--source-lang", "swa"): "no experts were computed for source language 'swa'",
        ("--k", "500"): "larger than the 128 units",
    }
    runner = CliRunner()
    for extra, msg in cases.items():
        res = runner.invoke(app, [*base, "--steps", "0", *extra])
        assert isinstance(res.exception, BabelscopeError), res.output
        assert msg in str(res.exception) and "\n" not in str(res.exception)
    res = runner.invoke(app, [*base, "--steps", "0,2", "--k", "4", "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    assert (run / "figures" / "steering_languages.png").exists()
    assert len(pd.read_parquet(run / "results" / "steering.parquet")) == 2 * 2 * 3 * 2


def test_context_length(tiny):
    model, tok = tiny
    p = start_ids(tok)  # one token; the tiny models have 64 positions
    if model.config.model_type == "gpt2":  # learned positions: a one-line error
        with pytest.raises(BabelscopeError, match="lower max_new_tokens to 63"):
            sample_tokens(model, p, [0], max_new_tokens=64)
    else:  # sinusoidal positions extend: generation goes on past the configured length
        assert len(sample_tokens(model, p, [0], max_new_tokens=66, stop_at_eos=False)[0]) == 66


def test_spread_picks_first_last_and_evenly_between():
    from babelscope.analysis.steering import spread

    steps = [0, 1, 2, 4, 8, 16, 32, 64, 128]
    assert spread(steps, 3) == [0, 8, 128]
    assert spread(steps, 2) == [0, 128]
    assert spread(steps, 1) == [128]
    assert spread(steps, 20) == steps
