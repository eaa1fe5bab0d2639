"""Checkpoint series: every way to name one, loading and fingerprints, one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from babelscope.checkpoints.series import (
    Checkpoint,
    CheckpointSeries,
    load_checkpoint,
    parse_step,
    resolve_series,
)
from babelscope.errors import BabelscopeError
from helpers import make_tiny_model, make_tokenizer


def test_parse_step():
    assert parse_step("step-1024") == 1024 and parse_step("checkpoint-5") == 5
    assert (
        parse_step("global_step1000") == 1000
        and parse_step("step_3") == 3
        and parse_step("step7.gguf") == 7
    )
    assert parse_step("final") is None and parse_step("main") is None


def test_local_directory_is_ordered_by_step(tmp_path, tiny_series_dir):
    root = tmp_path / "run"
    root.mkdir()
    for src, dst in (
        ("step-0", "checkpoint-10"),
        ("step-1", "global_step2"),
        ("step-2", "step-100"),
    ):
        shutil.copytree(tiny_series_dir / src, root / dst)
    (root / "_scratch").mkdir()  # ignored
    series = resolve_series(root)
    assert series.steps == [2, 10, 100] and series.name == "run"
    assert series.get(10).source.endswith("checkpoint-10")
    with pytest.raises(BabelscopeError, match="no step 3"):
        series.get(3)


def test_load_gives_model_tokenizer_family_and_fingerprint(tiny_series_dir):
    series = resolve_series(tiny_series_dir)
    a = load_checkpoint(series.get(0))
    again = load_checkpoint(series.get(0))
    b = load_checkpoint(series.get(1))
    assert a.step == 0 and a.family.model_type == "xglm" and a.params > 0
    assert a.fingerprint == again.fingerprint != b.fingerprint
    assert len(a.tokenizer) == a.model.config.vocab_size
    half = load_checkpoint(series.get(0), dtype="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(BabelscopeError, match="unknown dtype"):
        load_checkpoint(series.get(0), dtype="int3")


def test_a_byte_copy_has_the_same_fingerprint(tmp_path, tiny_series_dir):
    shutil.copytree(tiny_series_dir / "step-0", tmp_path / "step-500")
    orig = load_checkpoint(Checkpoint(0, str(tiny_series_dir / "step-0")))
    copy = load_checkpoint(Checkpoint(500, str(tmp_path / "step-500")))
    assert orig.fingerprint == copy.fingerprint


def test_explicit_lists_and_spec_files(tmp_path, tiny_series_dir):
    p = [str(tiny_series_dir / f"step-{i}") for i in range(3)]
    s1 = resolve_series([(20, p[2]), (10, p[1])])
    s2 = resolve_series(
        {"name": "mine", "checkpoints": [{"step": 5, "path": p[0]}, {"step": 1, "path": p[1]}]}
    )
    assert s1.steps == [10, 20] and s2.steps == [1, 5] and s2.name == "mine"
    (tmp_path / "s.json").write_text(json.dumps({"checkpoints": [{"step": 3, "path": p[0]}]}))
    (tmp_path / "s.toml").write_text(f'name = "t"\n[[checkpoints]]\nstep = 4\npath = "{p[1]}"\n')
    assert resolve_series(tmp_path / "s.json").steps == [3]
    assert resolve_series(tmp_path / "s.toml").name == "t"
    one = resolve_series(tiny_series_dir / "step-2")  # a model directory is a series of one
    assert one.steps == [2]


def test_hub_layout_with_revisions_and_a_tokenizer_from_elsewhere(tmp_path, tiny_series_dir):
    """The hub path, offline: a local 'repo' whose revisions are sub-directories."""
    repo, final = tmp_path / "bloom-intermediate", tmp_path / "bloom-final"
    for i, rev in enumerate(("global_step1000", "global_step10000")):
        shutil.copytree(tiny_series_dir / f"step-{i}", repo / rev)
        for f in (repo / rev).glob("tokenizer*"):
            f.unlink()  # like bloom-560m-intermediate: no tokenizer in the revisions
    final.mkdir()
    for f in (tiny_series_dir / "step-0").glob("*token*"):
        shutil.copy(f, final)
    spec = {
        "repo": str(repo),
        "revisions": ["global_step10000", "global_step1000"],
        "tokenizer": str(final),
    }
    series = resolve_series(spec)
    assert series.steps == [1000, 10000] and series.name == str(repo)
    loaded = load_checkpoint(series.get(10000))
    assert loaded.tokenizer("hola")["input_ids"]
    hub = resolve_series({"repo": "org/model", "revisions": {"main": 7}}, check=False)
    assert hub.checkpoints == [Checkpoint(7, "org/model", revision="main")]
    with pytest.raises(BabelscopeError, match="cannot parse a step from revision 'main'"):
        resolve_series({"repo": "org/model", "revisions": ["main"]}, check=False)
    with pytest.raises(BabelscopeError, match="no revision directory"):
        resolve_series({"repo": str(repo), "revisions": ["global_step5"]})


def test_shared_tokenizer_at_the_series_root(tmp_path, tiny_series_dir):
    root = tmp_path / "run"
    shutil.copytree(tiny_series_dir / "step-0", root / "step-8")
    for f in (root / "step-8").glob("*token*"):
        shutil.move(f, root)
    series = resolve_series(root)
    assert series.get(8).tokenizer == str(root)
    assert load_checkpoint(series.get(8)).tokenizer is not None


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_series_give_one_line_errors(tmp_path, tiny_series_dir):
    empty = tmp_path / "noweights"
    shutil.copytree(tiny_series_dir / "step-0", empty / "step-1")
    for f in (empty / "step-1").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(BabelscopeError) as e:
        resolve_series(empty)
    assert "has no weights" in _one_line(e)

    names = tmp_path / "names"
    shutil.copytree(tiny_series_dir / "step-0", names / "final")
    shutil.copytree(tiny_series_dir / "step-1", names / "step-1")
    with pytest.raises(BabelscopeError, match="cannot parse a step from 'final'"):
        resolve_series(names)

    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_series_dir / "step-0", mixed / "step-0")
    shutil.copytree(tiny_series_dir / "step-1", mixed / "step-1")
    make_tiny_model(mixed / "step-2", family="gpt2", tokenizer_dir=tiny_series_dir / "step-0")
    with pytest.raises(BabelscopeError) as e:
        resolve_series(mixed)
    msg = _one_line(e)
    assert "disagree on architecture" in msg and "steps 0, 1: xglm" in msg and "step 2: gpt2" in msg

    toks = tmp_path / "toks"
    shutil.copytree(tiny_series_dir / "step-0", toks / "step-0")
    make_tokenizer(
        tmp_path / "other",
        vocab_size=len(load_checkpoint(Checkpoint(0, str(toks / "step-0"))).tokenizer),
    )
    shutil.copytree(tiny_series_dir / "step-1", toks / "step-1")
    tok_json = json.loads((tmp_path / "other" / "tokenizer.json").read_text())
    vocab = tok_json["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same size, different vocabulary
    (toks / "step-1" / "tokenizer.json").write_text(json.dumps(tok_json))
    with pytest.raises(BabelscopeError) as e:
        resolve_series(toks)
    assert "disagree on tokenizer" in _one_line(e) and "step 1" in str(e.value)

    with pytest.raises(BabelscopeError, match="several checkpoints for step"):
        CheckpointSeries("x", [Checkpoint(1, "a"), Checkpoint(1, "b")])
    with pytest.raises(BabelscopeError, match="missing' not found"):
        resolve_series(tmp_path / "missing")
    # A bare org/name is a local path too: missing, it says so (hub repos: hub:org/name).
    with pytest.raises(BabelscopeError, match="'org/model' not found.*hub:org/name"):
        resolve_series("org/model")
    assert resolve_series("hub:org/model", check=False).checkpoints == [Checkpoint(0, "org/model")]
    with pytest.raises(BabelscopeError, match="holds no checkpoints"):
        resolve_series(tmp_path / "other")


def test_unsupported_family_is_a_one_line_error(tmp_path, tiny_series_dir):
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained(tiny_series_dir / "step-0")
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=24, is_decoder=True)  # fmt: skip
    tf.BertLMHeadModel(cfg).save_pretrained(tmp_path / "step-1")
    tok.save_pretrained(tmp_path / "step-1")
    series = resolve_series(tmp_path)
    with pytest.raises(BabelscopeError) as e:
        load_checkpoint(series.get(1))
    assert "unsupported model family 'bert'" in _one_line(e) and "FAMILIES" in str(e.value)


def test_fingerprint_is_fast_and_sees_every_tensor(tiny_series_dir):
    a = load_checkpoint(Checkpoint(0, str(tiny_series_dir / "step-0")))
    before = a.fingerprint
    from babelscope.checkpoints.series import weights_fingerprint

    with torch.no_grad():
        p = next(iter(a.model.parameters()))
        p.view(-1)[0] += 1e-3
    assert weights_fingerprint(a.model) != before
    assert np.isfinite(a.params)
