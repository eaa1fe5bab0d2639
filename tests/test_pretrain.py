"""Pre-training on the micro configuration: checkpoints, log, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from babelscope.corpora.corpus import save_corpus
from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata
from babelscope.pretrain import MICRO_CONFIG, load_pretrain_config, parse_pretrain_config, pretrain
from babelscope.pretrain import checkpoint as ck
from babelscope.pretrain.tokenizer import BOS_ID, EOS_ID
from babelscope.pretrain.train import LOG_FILE, RUN_FILE, heldout_column
from helpers import tiny_corpus


def micro(**sections) -> object:
    """The micro config with some sections overridden, e.g. ``micro(train={"steps": 5})``."""
    cfg = load_pretrain_config(MICRO_CONFIG).model_dump()
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg[name].update(values)
        else:
            cfg[name] = values
    return parse_pretrain_config(cfg)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    save_corpus(tiny_corpus(), d)
    return d


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory) -> Path:
    """An uninterrupted micro run."""
    out = tmp_path_factory.mktemp("run") / "model"
    pretrain(micro(), data_dir, out)
    return out


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=atol, rtol=0), k


# --- a finished run -------------------------------------------------------------------


def test_checkpoints_at_zero_powers_of_two_interval_and_last(finished):
    cfg = micro()
    assert cfg.checkpoint_steps() == [0, 1, 2, 4, 5, 8, 10, 12]
    assert [s for s, _ in ck.list_checkpoints(finished)] == cfg.checkpoint_steps()
    assert not (finished / ck.STAGING_DIR).exists()
    # Only the newest keeps the (large) resume state.
    with_state = [s for s, p in ck.list_checkpoints(finished) if ck.has_training_state(p)]
    assert with_state == [12]


def test_checkpoints_load_with_auto_classes(finished):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    path = ck.checkpoint_dir(finished, 12)
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (path / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "XGLMForCausalLM"
    assert tok("hola")["input_ids"][0] == BOS_ID == model.config.bos_token_id
    gen = GenerationConfig.from_pretrained(path)
    assert (gen.bos_token_id, gen.eos_token_id) == (BOS_ID, EOS_ID)
    prov = json.loads((path / "provenance.json").read_text())
    assert prov["step"] == 12 and set(prov["heldout_loss"]) == {"deu", "eng", "spa", "zho"}


def test_step_zero_differs_from_last_and_loss_falls(finished):
    w0, w12 = weights(ck.checkpoint_dir(finished, 0)), weights(ck.checkpoint_dir(finished, 12))
    assert any(not torch.equal(w0[k], w12[k]) for k in w0)
    log = pd.read_parquet(finished / LOG_FILE)
    for lang in ("deu", "eng", "spa", "zho"):
        col = log[heldout_column(lang)].dropna()
        assert col.iloc[-1] < col.iloc[0], lang


def test_log_has_columns_rows_and_provenance(finished):
    log = pd.read_parquet(finished / LOG_FILE)
    assert list(log["step"]) == list(range(13))
    assert {"loss", "lr", "tokens_seen", "grad_norm", "elapsed_s"} <= set(log.columns)
    assert log["tokens_seen"].iloc[-1] == 12 * 4 * 32  # steps x batch x seq_len
    evaluated = log.dropna(subset=[heldout_column("eng")])["step"].tolist()
    assert evaluated == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12]  # eval_every 3 and every checkpoint
    lr = log["lr"].dropna().to_numpy()
    assert lr.argmax() == 1 and lr[-1] < lr.max()  # warm-up 2 steps, then decay
    meta = read_parquet_metadata(finished / LOG_FILE)
    assert meta["stage"] == "pretrain" and meta["data_hash"] and meta["run_id"]
    assert meta["config"]["model"]["num_layers"] == 2
    assert abs(sum(meta["language_probabilities"].values()) - 1) < 1e-9
    assert (finished / "figures" / "training_loss.png").stat().st_size > 0
    assert (finished / "figures" / "training_loss.svg").is_file()


def test_finished_run_is_not_trained_again(finished, data_dir):
    last = ck.checkpoint_dir(finished, 12) / "model.safetensors"
    before = last.stat().st_mtime_ns
    paths = pretrain(micro(), data_dir, finished)
    assert [p.name for p in paths][-1] == "step-12"
    assert last.stat().st_mtime_ns == before


# --- resume ---------------------------------------------------------------------------


class Crash(RuntimeError):
    pass


def crash_at(step: int):
    def hook(s: int) -> None:
        if s == step:
            raise Crash(f"simulated crash at step {s}")

    return hook


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_after_crash_equals_uninterrupted(data_dir, tmp_path, finished, bf16):
    cfg = micro(train={"bf16": bf16})
    reference = finished
    if bf16:
        reference = tmp_path / "reference"
        pretrain(cfg, data_dir, reference)
    out = tmp_path / "model"
    with pytest.raises(Crash):
        pretrain(cfg, data_dir, out, _on_step=crash_at(7))
    assert [s for s, _ in ck.list_checkpoints(out)] == [0, 1, 2, 4, 5]
    assert not (out / LOG_FILE).exists()
    with pytest.raises(BabelscopeError, match="--resume"):
        pretrain(cfg, data_dir, out)
    pretrain(cfg, data_dir, out, resume=True)
    for step in (5, 8, 12):
        assert_same_weights(ck.checkpoint_dir(reference, step), ck.checkpoint_dir(out, step))
    a, b = pd.read_parquet(reference / LOG_FILE), pd.read_parquet(out / LOG_FILE)
    cols = [c for c in a.columns if c != "elapsed_s"]
    pd.testing.assert_frame_equal(a[cols], b[cols], rtol=0, atol=1e-6)


def test_torn_checkpoint_is_never_listed_and_staging_is_cleaned(data_dir, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(Crash):
        pretrain(micro(), data_dir, out, _on_step=crash_at(3))
    # What a kill during a save leaves: a staging dir, and a step dir missing files.
    (out / ck.STAGING_DIR / "step-4.abc").mkdir(parents=True)
    torn = ck.checkpoint_dir(out, 4)
    torn.mkdir()
    (torn / "config.json").write_text("{}")
    assert [s for s, _ in ck.list_checkpoints(out)] == [0, 1, 2]
    pretrain(micro(), data_dir, out, resume=True)
    assert not (out / ck.STAGING_DIR).exists()
    assert 4 in [s for s, _ in ck.list_checkpoints(out)]


def test_resume_after_sigkill_equals_uninterrupted(data_dir, tmp_path):
    """A CLI run killed with SIGKILL mid-way, resumed, ends with the uninterrupted weights."""
    cfg_file = tmp_path / "longer.toml"
    cfg_file.write_text(
        MICRO_CONFIG.read_text()
        .replace("steps = 12", "steps = 400")
        .replace("save_every = 5", "save_every = 50")
    )
    cfg = load_pretrain_config(cfg_file)
    out = tmp_path / "killed"
    env = {**os.environ, "BABELSCOPE_QUIET": "1"}
    cmd = [
        sys.executable,
        "-m",
        "babelscope",
        "pretrain",
        "--config",
        str(cfg_file),
        "--data",
        str(data_dir),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ck.checkpoint_dir(out, 64).exists():
            assert proc.poll() is None and time.monotonic() < deadline, (
                "run ended before it could be killed"
            )
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = [s for s, _ in ck.list_checkpoints(out)]
    assert 64 in done and 400 not in done
    pretrain(cfg, data_dir, out, resume=True)
    reference = tmp_path / "reference"
    pretrain(cfg, data_dir, reference)
    assert_same_weights(ck.checkpoint_dir(reference, 400), ck.checkpoint_dir(out, 400))


# --- bad input ------------------------------------------------------------------------


def test_other_run_in_out_dir_is_refused_unless_force(finished, data_dir, tmp_path):
    other = micro(seed=1)
    with pytest.raises(BabelscopeError, match="different pre-training run.*--force"):
        pretrain(other, data_dir, finished)
    with pytest.raises(BabelscopeError, match="different pre-training run"):
        pretrain(other, data_dir, finished, resume=True)
    # --force replaces it (on a copy: the module's finished run stays intact).
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    (copy / "unrelated.txt").write_text("keep me")
    pretrain(other, data_dir, copy, force=True)
    assert json.loads((copy / RUN_FILE).read_text())["config"]["seed"] == 1
    assert (copy / "unrelated.txt").read_text() == "keep me"


def test_out_dir_without_a_checkpoint_starts_fresh_and_keeps_foreign_files(data_dir, tmp_path):
    out = tmp_path / "model"
    (out / "checkpoints" / "checkpoint-100").mkdir(parents=True)  # another trainer's
    (out / "checkpoints" / "checkpoint-100" / "x.bin").write_bytes(b"x")
    (out / RUN_FILE).write_text('{"run_id": "someone-else"}')  # killed before step 0
    pretrain(micro(train={"steps": 3}), data_dir, out)
    assert (out / "checkpoints" / "checkpoint-100" / "x.bin").read_bytes() == b"x"
    assert [s for s, _ in ck.list_checkpoints(out)] == [0, 1, 2, 3]
    # --force removes our checkpoints only.
    pretrain(micro(train={"steps": 4}), data_dir, out, force=True)
    assert [s for s, _ in ck.list_checkpoints(out)] == [0, 1, 2, 4]
    assert (out / "checkpoints" / "checkpoint-100" / "x.bin").exists()


def test_empty_training_split_and_language_without_training_text(tmp_path):
    df = tiny_corpus()
    only_heldout = df.assign(split="heldout")
    save_corpus(only_heldout, tmp_path / "a")
    with pytest.raises(BabelscopeError, match="no training text"):
        pretrain(micro(), tmp_path / "a", tmp_path / "out_a")
    no_zho = df[~((df["lang"] == "zho") & (df["split"] == "train"))]
    save_corpus(no_zho, tmp_path / "b")
    with pytest.raises(BabelscopeError, match="no training text in zho") as e:
        pretrain(micro(), tmp_path / "b", tmp_path / "out_b")
    assert "\n" not in str(e.value)
    for out in ("out_a", "out_b"):
        assert ck.list_checkpoints(tmp_path / out) == []
        assert not (tmp_path / out / RUN_FILE).exists()


def test_missing_corpus_and_missing_language(tmp_path, data_dir):
    with pytest.raises(BabelscopeError, match="no corpus"):
        pretrain(micro(), tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(BabelscopeError, match="fra"):
        pretrain(micro(languages=["eng", "fra"]), data_dir, tmp_path / "out")


def test_language_subset_trains_only_those(data_dir, tmp_path):
    out = tmp_path / "sub"
    pretrain(micro(languages=["eng", "zho"], train={"steps": 3}), data_dir, out)
    log = pd.read_parquet(out / LOG_FILE)
    assert {c for c in log.columns if c.startswith("heldout_loss_")} == {
        "heldout_loss_eng",
        "heldout_loss_zho",
    }


# --- samples ----------------------------------------------------------------------------


def test_generate_samples_is_seeded(finished):
    from babelscope.pretrain.samples import generate_samples

    last = ck.checkpoint_dir(finished, 12)
    a = generate_samples(last, n=2, seed=3, max_new_tokens=8)
    b = generate_samples(last, n=2, seed=3, max_new_tokens=8)
    assert a == b and len(a) == 2
    (p,) = generate_samples(last, prompts=["The water"], max_new_tokens=4)
    assert p.startswith("The water")


# --- data sampling ----------------------------------------------------------------------


def test_sampler_sequences_start_with_bos_are_monolingual_and_resume_exactly():
    from babelscope.pretrain.data import LanguageSampler

    sents = {
        "aaa": [np.array([BOS_ID, 10, 11, EOS_ID]), np.array([BOS_ID, 12, EOS_ID])],
        "bbb": [np.array([BOS_ID, 20, 21, 22, 23, EOS_ID])],
    }
    s = LanguageSampler(sents, alpha=0.3, seed=0)
    ids, langs = s.batch(6, 9)
    assert ids.shape == (6, 9) and (ids[:, 0] == BOS_ID).all()
    for row, lang in zip(ids.tolist(), langs, strict=True):
        content = {t for t in row if t not in (BOS_ID, EOS_ID)}
        assert content <= ({10, 11, 12} if lang == "aaa" else {20, 21, 22, 23})
    state = json.loads(json.dumps(s.state()))  # JSON round trip, as in a checkpoint
    nxt = s.batch(4, 9)
    s2 = LanguageSampler(sents, alpha=0.3, seed=99)
    s2.set_state(state)
    again = s2.batch(4, 9)
    assert torch.equal(nxt[0], again[0]) and nxt[1] == again[1]


def test_language_probabilities_temperature():
    from babelscope.pretrain.data import language_probabilities

    counts = {"eng": 900, "swa": 100}
    assert language_probabilities(counts, 1.0) == pytest.approx({"eng": 0.9, "swa": 0.1})
    assert language_probabilities(counts, 0.0) == pytest.approx({"eng": 0.5, "swa": 0.5})
    p = language_probabilities(counts, 0.3)
    assert 0.5 < p["eng"] < 0.9 and p["swa"] == pytest.approx(0.1**0.3 / (0.9**0.3 + 0.1**0.3))
