"""`babelscope run` end to end on a tiny random series and a tiny parallel corpus:
every stage, the run directory layout, caching, resume, and the bad-input contract."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from babelscope.config import load_config
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata
from babelscope.pipeline import run_study

LANGS = ["eng", "spa", "deu", "zho"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A data dir built by the real builder from a parallel TSV of the tiny texts."""
    from babelscope.corpora.build import build_corpus
    from helpers import TINY_TEXTS

    root = tmp_path_factory.mktemp("data")
    tsv = root / "parallel.tsv"
    n = len(TINY_TEXTS["eng"])
    lines = ["\t".join(LANGS)] + [
        "\t".join(TINY_TEXTS[lang][i] for lang in LANGS) for i in range(n)
    ]
    tsv.write_text("\n".join(lines) + "\n")
    from babelscope.concepts.matching import MatchSettings

    # eight sentences a language: one negative per positive, one length bin
    return build_corpus(root / "data", languages=LANGS, sources=(), user=tsv, min_positives=1,
                        match=MatchSettings(ratio=1, length_bins=1))  # fmt: skip


def config_text(data_dir, series_dir, out_dir):
    return f"""
name = "tiny"
out = "{out_dir}"
[data]
dir = "{data_dir}"
build = false
languages = {json.dumps(LANGS)}
[model]
series = "{series_dir}"
device = "cpu"
[probe]
sentences_per_language = 6
tokens_per_language = 24
seeds = [0, 1]
n_jobs = 1
[similarity]
items = 8
n_permutations = 20
n_boot = 100
[experts]
min_positives = 1
top_k_store = 8
[align]
k = 2
[steer]
seeds = 2
max_new_tokens = 4
source_lang = "spa"
k = 4
max_concepts = 1
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data, tiny_series_dir):
    root = tmp_path_factory.mktemp("run")
    cfg_path = root / "study.toml"
    cfg_path.write_text(config_text(tiny_data, tiny_series_dir, root / "out"))
    run = run_study(load_config(cfg_path))
    return cfg_path, run


def test_run_directory_layout(finished_run):
    _, run = finished_run
    d = run.dir
    for rel in (
        "config.toml", "checkpoints.json", "provenance.json", "report.html",
        "results/probe.parquet", "results/experts.parquet",
        "results/alignment.parquet", "results/steering.parquet",
        "results/similarity.parquet", "results/similarity_lens.parquet",
        "results/shortcuts.parquet", "results/lexical_overlap.parquet",
        "results/alignment_unmatched.parquet",
    ):  # fmt: skip
        assert (d / rel).exists(), rel
    assert list((d / "figures").glob("probe*.png")) and list((d / "figures").glob("probe*.svg"))
    assert list((d / "figures").glob("alignment*.png"))
    assert list((d / "figures").glob("steering*.png"))
    assert (d / "figures" / "representations_heatmap.png").exists()
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["data_hash"] and set(map(int, prov["fingerprints"])) == {0, 1, 2}
    probe = pd.read_parquet(d / "results" / "probe.parquet")
    assert sorted(probe["step"].unique()) == [0, 1, 2]
    meta = read_parquet_metadata(d / "results" / "probe.parquet")
    assert meta.get("data_hash") == prov["data_hash"]
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3


def test_concept_data_checks_reach_the_report(finished_run):
    """Matching before/after, the shortcut table and the lexical split are in the report."""
    from babelscope.report import pool_checks as pc

    _, run = finished_run
    t = pc.matching_table(run.dir)
    assert {"value_unmatched", "value_matched"} <= set(t.columns) and len(t)
    assert len(pc.shortcut_table(run.dir)) and pc.shortcut_claims(run.dir)
    al = pd.read_parquet(run.dir / "results" / "alignment.parquet")
    assert {"overlap_shared", "overlap_disjoint"} <= set(al["measure"])
    assert (run.dir / "figures" / "shortcuts.png").exists()
    html = (run.dir / "report.html").read_text()
    assert "What the concept data measures" in html and "unmatched" in html


def test_second_run_is_cached(finished_run):
    cfg_path, run = finished_run
    before = {p: p.stat().st_mtime_ns for p in (run.dir / "results").glob("*.parquet")}
    again = run_study(load_config(cfg_path))
    after = {p: p.stat().st_mtime_ns for p in (again.dir / "results").glob("*.parquet")}
    assert before == after


def test_changed_config_refused_without_force(finished_run):
    cfg_path, run = finished_run
    changed = cfg_path.read_text().replace("seeds = [0, 1]", "seeds = [0]")
    other = cfg_path.with_name("changed.toml")
    other.write_text(changed)
    with pytest.raises(BabelscopeError, match=r"belongs to a different configuration.*probe.seeds"):
        run_study(load_config(other))


def test_stage_before_its_inputs_is_an_error(tmp_path, tiny_data, tiny_series_dir):
    cfg = tmp_path / "s.toml"
    cfg.write_text(config_text(tiny_data, tiny_series_dir, tmp_path / "fresh"))
    with pytest.raises(
        BabelscopeError, match=r"stage '(data|inspect)' must run before probe: add it to --stages"
    ):
        run_study(load_config(cfg), stages=["probe"])


def test_cli_bad_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[modle]\n")
    r = subprocess.run(
        [sys.executable, "-m", "babelscope", "run", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {bad}: unknown key 'modle' (did you mean 'model'?)"
    r = subprocess.run(
        [sys.executable, "-m", "babelscope", "run", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_redoing_a_stage_with_the_same_result_keeps_downstream_cached(finished_run):
    cfg_path, run = finished_run
    probe = run.dir / "results" / "probe.parquet"
    before = probe.stat().st_mtime_ns
    run_study(load_config(cfg_path), stages=["inspect"], force=True)
    again = run_study(load_config(cfg_path))
    assert probe.stat().st_mtime_ns == before
    assert again.keys["probe"] == run.keys["probe"]


def test_new_weights_at_the_same_path_are_analysed_again(tmp_path, tiny_data, tiny_series_dir):
    """Replacing a checkpoint's weights in place (e.g. pre-training redone) must not reuse
    probe or expert results computed from the old weights."""
    import shutil

    series = tmp_path / "series"
    shutil.copytree(tiny_series_dir, series)
    cfg = tmp_path / "s.toml"
    cfg.write_text(config_text(tiny_data, series, tmp_path / "out"))
    run = run_study(load_config(cfg), stages=["data", "pretrain", "inspect", "probe", "experts"])
    fp_before = read_parquet_metadata(run.dir / "results" / "experts.parquet")["fingerprints"]
    # Step 1 now holds step 2's weights.
    weights = "model.safetensors"
    (series / "step-1" / weights).unlink()
    shutil.copy(series / "step-2" / weights, series / "step-1" / weights)
    again = run_study(load_config(cfg), stages=["data", "pretrain", "inspect", "probe", "experts"])
    # Step 2 is now a duplicate of step 1: inspect flags it and the analyses leave it out.
    checks = json.loads((again.dir / "checkpoints.json").read_text())
    assert checks["usable_steps"] == [0, 1]
    fp_after = read_parquet_metadata(again.dir / "results" / "experts.parquet")["fingerprints"]
    assert fp_after["1"] == fp_before["2"] != fp_before["1"]
    meta = read_parquet_metadata(again.dir / "results" / "probe.parquet")
    assert meta["fingerprints"]["1"] == fp_before["2"]
    # (a reused result would carry the old fingerprint: these were recomputed)


def test_standalone_align_on_a_finished_run(finished_run, tmp_path):
    """`babelscope align` on a copy of a run: one summary line per whole-model row, with its
    null and p (the rows have no closed-form chance column)."""
    import shutil

    _, run = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run.dir, copy, ignore=shutil.ignore_patterns(".lock"))
    import os

    env = {k: v for k, v in os.environ.items() if k != "BABELSCOPE_QUIET"}  # see its lines
    r = subprocess.run(
        [sys.executable, "-m", "babelscope", "align", "--out", str(copy), "--k", "2"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "null" in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert (copy / "figures" / "shortcuts.png").exists()
