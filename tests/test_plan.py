"""`babelscope plan`: the counts per stage against independent figures (the demo run's
measured outputs, BLOOM-7b1's published size), storage settings, warnings, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import babelscope.plan as plan_mod
from babelscope.cli import main
from babelscope.config import STAGES, load_config
from babelscope.errors import BabelscopeError
from babelscope.plan import EMBEDDED, make_plan

ROOT = Path(__file__).resolve().parents[1]


def _stage(plan, name):
    return next(s for s in plan["stages"] if s["stage"] == name)


def _demo(tmp_path, **experts):
    over = {"out": str(tmp_path / "run")} | ({"experts": experts} if experts else {})
    return make_plan(load_config(None, overrides=over), calibrate=False)


def test_embedded_plan_counts(tmp_path):
    plan = _demo(tmp_path)
    assert [s["stage"] for s in plan["stages"]] == list(STAGES)
    a = plan["architecture"]
    assert (a["model_type"], a["layers"], a["mlp"], a["units"]["mlp"]) == ("xglm", 4, 512, 2048)
    assert plan["series"]["steps"] == [0, 64, 128, 256, 512, 1024, 1536]
    # The demo run's experts cache: 17 pools of the embedded size, 2,048 float32 units, 7 steps.
    assert _stage(plan, "experts")["cache_bytes"] == 17 * EMBEDDED["pool"] * 2048 * 4 * 7
    # The demo run wrote 1,080 steering outputs (runs/demo/.stages/steer.json), 64 tokens each.
    assert _stage(plan, "steer")["generated_tokens"] == 1080 * 64
    assert "not built yet" in plan["data"]["source"] and plan["total"]["seconds"] == 0
    assert all(s["seconds"] is None for s in plan["stages"])  # no calibration asked


@pytest.mark.parametrize(
    ("experts", "share"),
    [({"cache_dtype": "bfloat16"}, 1 / 2), ({"keep_cache": False}, 1 / 7), ({"cache": False}, 0)],
)
def test_storage_settings_scale_the_cache(tmp_path, experts, share):
    full = _stage(_demo(tmp_path), "experts")["cache_bytes"]
    assert _stage(_demo(tmp_path, **experts), "experts")["cache_bytes"] == full * share


def test_a_cache_larger_than_the_free_disk_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "free_disk", lambda path: 10**6)
    plan = _demo(tmp_path)
    assert any("activation cache" in n and "would not fit" in n for n in plan["notes"])
    assert not any("would not fit" in n for n in _demo(tmp_path, cache=False)["notes"])


def test_bloom_7b1_example_plans_without_the_hub(tmp_path):
    cfg = load_config(ROOT / "examples" / "bloom-7b1-gpu.toml", overrides={"out": str(tmp_path)})
    plan = make_plan(cfg, calibrate=False)
    a = plan["architecture"]
    assert a["params"] == 7_069_016_064  # BLOOM-7b1's published parameter count
    assert a["units"]["mlp"] == 30 * 16384 and a["vocab"] == 250880
    assert plan["series"]["checkpoints"] == 8 and "[model.architecture]" in a["source"]
    experts = _stage(plan, "experts")
    assert experts["cache_bytes"] == 17 * EMBEDDED["pool"] * 491520 * 2  # bfloat16, one step
    # Every model stage downloads the series again (about 14 GB a revision, stored fp16).
    assert experts["download_bytes"] == 8 * 7_069_016_064 * 2
    assert any("hub downloads" in n for n in plan["notes"])


def test_local_series_architecture_and_a_hub_series_without_one(tmp_path, tiny_series_dir):
    cfg = load_config(
        None, overrides={"out": str(tmp_path), "model": {"series": str(tiny_series_dir)}}
    )
    plan = make_plan(cfg, calibrate=False)
    assert plan["architecture"]["layers"] == 2 and "step 0" in plan["architecture"]["source"]
    hub = {"repo": "org/absent-model", "revisions": ["global_step1"]}
    cfg = load_config(None, overrides={"out": str(tmp_path), "model": {"series": hub}})
    with pytest.raises(BabelscopeError, match=r"add \[model.architecture\]"):
        make_plan(cfg, calibrate=False)


def test_calibrated_plan_of_a_tiny_series(tmp_path, tiny_series_dir):
    over = {"out": str(tmp_path), "model": {"series": str(tiny_series_dir), "device": "cpu"},
            "steer": {"seeds": 4, "k": [10]}, "align": {"permutations": 5}}  # fmt: skip
    plan = make_plan(load_config(None, overrides=over), calibrate=True)
    timed = {s["stage"]: s["seconds"] for s in plan["stages"]}
    assert all(timed[s] > 0 for s in ("inspect", "probe", "similarity", "experts", "steer"))
    assert timed["pretrain"] is None and plan["total"]["seconds"] == pytest.approx(
        sum(v for v in timed.values() if v is not None)
    )
    assert plan["calibration"]["base_per_token"] > 0 and plan["calibration"]["notes"]


def test_cli_table_and_json(tmp_path, capsys):
    cfg = tmp_path / "study.toml"
    cfg.write_text(f'out = "{tmp_path / "run"}"\n')
    with pytest.raises(SystemExit) as e:
        main(["plan", str(cfg), "--json", "--no-calibrate"])
    assert e.value.code == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["config"] == str(cfg) and len(plan["stages"]) == len(STAGES)
    with pytest.raises(SystemExit):
        main(["plan", str(cfg), "--no-calibrate"])
    out = capsys.readouterr().out
    assert "per stage" in out and "experts" in out and "activation cache" in out
    assert not (tmp_path / "run").exists(), "plan writes nothing"
    with pytest.raises(SystemExit):
        main(["plan", str(ROOT / "examples" / "bloom-7b1-gpu.toml"), "--no-calibrate"])
    assert "([model.architecture] in the configuration)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["plan", str(tmp_path / "missing.toml")])
    assert e.value.code == 2 and "not found" in capsys.readouterr().err
