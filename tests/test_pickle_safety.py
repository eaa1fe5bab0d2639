"""A pickle payload placed in any file babelscope reads never executes.

The payload's ``__reduce__`` would create a marker file when unpickled. It is planted as
resume state (new and legacy names), as weights (``model.safetensors``,
``pytorch_model.bin``), as data and result tables, as activation-cache arrays and as
JSON records; each read must fail (one-line error, or a flagged checkpoint) without the
marker appearing. A source scan keeps unsafe loaders from coming back.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from babelscope.errors import BabelscopeError

SRC = Path(__file__).resolve().parents[1] / "src" / "babelscope"


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload(marker: Path) -> bytes:
    return pickle.dumps({"state": Payload(marker)})


def test_no_unsafe_loader_in_the_sources():
    """No pickle, joblib/pandas pickles, torch.load without weights_only=True, or
    np.load(allow_pickle=True) anywhere babelscope reads files."""
    bad = []
    for f in SRC.rglob("*.py"):
        text = f.read_text()
        for pat in (r"\bpickle\.loads?\(", r"joblib\.load\(", r"read_pickle\(", r"allow_pickle=True",
                    r"weights_only=False", r"\bdill\b", r"\bcloudpickle\b"):  # fmt: skip
            if re.search(pat, text):
                bad.append(f"{f.name}: {pat}")
        for call in re.findall(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in call:
                bad.append(f"{f.name}: torch.load({call})")
    assert not bad, bad


@pytest.fixture(scope="module")
def interrupted_pretrain(tmp_path_factory):
    """A micro pre-training run that crashed after step 5 (resume state at step 5)."""
    from babelscope.corpora.corpus import save_corpus
    from babelscope.pretrain import MICRO_CONFIG, load_pretrain_config, pretrain
    from helpers import tiny_corpus

    root = tmp_path_factory.mktemp("pickle_pretrain")
    data = root / "data"
    save_corpus(tiny_corpus(), data)
    cfg = load_pretrain_config(MICRO_CONFIG)

    def crash(step: int) -> None:
        if step == 7:
            raise KeyboardInterrupt  # stands in for a kill: the loop does not catch it

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, data, root / "model", _on_step=crash)
    return cfg, data, root / "model"


@pytest.mark.parametrize("where", ["tensors.safetensors", "tensors.json", "state.pt", "state.json"])
def test_planted_resume_state_never_runs(interrupted_pretrain, tmp_path, where):
    from babelscope.pretrain import checkpoint as ck
    from babelscope.pretrain import pretrain

    cfg, data, model = interrupted_pretrain
    out = tmp_path / "model"
    shutil.copytree(model, out)
    state = ck.checkpoint_dir(out, 5) / ck.STATE_DIR
    marker = tmp_path / "PWNED"
    if where == "state.pt":  # a legacy name: read only with weights_only=True
        (state / ck.TENSORS_FILE).unlink()
        (state / ck.STRUCTURE_FILE).unlink()
    (state / where).write_bytes(payload(marker))
    with pytest.raises(BabelscopeError, match="cannot resume"):
        pretrain(cfg, data, out, resume=True)
    assert not marker.exists()


def test_resume_state_round_trips_without_pickle(tmp_path):
    import torch

    from babelscope.pretrain.checkpoint import load_tensor_state, save_tensor_state

    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2, 2)}},
                           "param_groups": [{"betas": (0.9, 0.95), "params": [0]}]},
             "torch_rng": torch.get_rng_state(), "scheduler": {"last_epoch": 3, "lr_lambdas": [None]}}  # fmt: skip
    save_tensor_state(state, tmp_path)
    back = load_tensor_state(tmp_path)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert list(back["optimizer"]["state"]) == [0]
    assert torch.equal(back["optimizer"]["state"][0]["m"], torch.ones(2, 2))
    assert (
        torch.equal(back["torch_rng"], state["torch_rng"]) and back["scheduler"]["last_epoch"] == 3
    )
    assert not list(tmp_path.glob("*.pt"))


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_pickled_weights_are_a_flagged_checkpoint(tiny_series_dir, tmp_path, name):
    from babelscope.checkpoints.inspect import inspect_series

    series = tmp_path / "series"
    shutil.copytree(tiny_series_dir, series)
    marker = tmp_path / "PWNED"
    (series / "step-1" / "model.safetensors").unlink()
    (series / "step-1" / name).write_bytes(payload(marker))
    df = inspect_series(series, {"eng": ["The water is cold."]})
    flags = dict(zip(df["step"], df["flags"], strict=True))
    assert flags[1] == "broken:unreadable" and flags[0] == "" and flags[2] == ""
    assert not marker.exists()


@pytest.mark.parametrize("name", ["corpus.parquet", "concepts.parquet"])
def test_pickled_tables_are_refused(tmp_path, name):
    from babelscope.concepts.labels import load_concept_labels
    from babelscope.corpora.corpus import load_corpus, save_corpus
    from babelscope.preflight import _parquet_column
    from helpers import tiny_corpus

    save_corpus(tiny_corpus(), tmp_path)
    marker = tmp_path / "PWNED"
    (tmp_path / name).write_bytes(payload(marker))
    with pytest.raises(BabelscopeError):
        _parquet_column(tmp_path / name, "lang")
    if name == "corpus.parquet":
        with pytest.raises(BabelscopeError, match="not a readable Parquet file"):
            load_corpus(tmp_path)
    else:
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as it is one
            load_concept_labels(tmp_path)
    assert not marker.exists()


def test_pickled_activation_cache_array_is_refused(tiny_series_dir, tmp_path):
    """Even with a manifest forged to match, an object array in the cache is not loaded."""
    from babelscope.activations.cache import MANIFEST, cached_pooled
    from babelscope.checkpoints.series import load_checkpoint, resolve_series
    from babelscope.io import sha256_file

    ckpt = resolve_series(tiny_series_dir).checkpoints[0]
    loaded = load_checkpoint(ckpt)
    texts = ["The water is cold.", "El agua está fría."]
    got = cached_pooled(loaded, texts, data_key="d", cache_dir=tmp_path / "cache")
    entry = Path(got.meta["cache_entry"])
    manifest = json.loads((entry / MANIFEST).read_text())
    name, rec = next(iter(manifest["files"].items()))
    marker = tmp_path / "PWNED"
    np.save(entry / rec["file"], np.array([Payload(marker)], dtype=object), allow_pickle=True)
    rec["size"] = (entry / rec["file"]).stat().st_size
    rec["sha256"] = sha256_file(entry / rec["file"])
    (entry / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BabelscopeError, match="not a plain array"):
        cached_pooled(loaded, texts, data_key="d", cache_dir=tmp_path / "cache")
    assert not marker.exists()


def test_pickled_run_records_are_not_trusted(tmp_path):
    """Stage records and the run lock are JSON: a pickle there is a torn record."""
    from babelscope.config import RunConfig
    from babelscope.pipeline import Run
    from babelscope.rundir import _holder

    run = Run(RunConfig(out=tmp_path / "run"))
    marker = tmp_path / "PWNED"
    run.record_path("probe").parent.mkdir(parents=True)
    run.record_path("probe").write_bytes(payload(marker))
    assert run.record("probe") is None
    (tmp_path / ".lock").write_bytes(payload(marker))
    assert _holder(tmp_path / ".lock") == "another babelscope process"
    assert not marker.exists()
