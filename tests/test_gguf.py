"""Checkpoint series stored as GGUF files: a tiny random Llama written in the test (F32, with
byte-level BPE tokenizer metadata), resolved, loaded through transformers' ``gguf_file=`` and
extracted from; broken files give one-line errors. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from babelscope.checkpoints.series import (
    Checkpoint,
    load_checkpoint,
    resolve_series,
    weights_fingerprint,
)
from babelscope.errors import BabelscopeError
from helpers import TINY_TEXTS
from helpers_gguf import make_tiny_gguf

pytest.importorskip("gguf", reason="GGUF support needs the gguf package (the dev extra)")
pytest.importorskip("accelerate", reason="transformers loads GGUF files only with accelerate")

REPO = Path(__file__).resolve().parents[1]
TEXTS = [s for v in TINY_TEXTS.values() for s in v[:3]]


@pytest.fixture(scope="module")
def gguf_series(tmp_path_factory):
    """root/step-100.gguf and root/step-200.gguf: two random tiny Llamas, one tokenizer.

    Returns (root, {step: torch model written there}, the tokenizer they were written with).
    """
    root = tmp_path_factory.mktemp("gguf")
    m100, tok = make_tiny_gguf(root / "step-100.gguf", seed=0)
    m200, _ = make_tiny_gguf(root / "step-200.gguf", seed=1, tokenizer=tok)
    return root, {100: m100, 200: m200}, tok


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_the_written_file_loads_exactly_through_transformers(gguf_series):
    import transformers as tf

    root, models, tok = gguf_series
    model = tf.AutoModelForCausalLM.from_pretrained(
        root, gguf_file="step-100.gguf", dtype=torch.float32
    ).eval()
    gtok = tf.AutoTokenizer.from_pretrained(root, gguf_file="step-100.gguf")
    assert model.config.model_type == "llama" and model.config.num_key_value_heads == 2
    for s in TEXTS:
        assert gtok(s)["input_ids"] == tok(s)["input_ids"], s
    assert (gtok.bos_token, gtok.eos_token, gtok.pad_token) == ("<s>", "</s>", "<pad>")
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        ref, got = models[100](ids).logits, model(ids).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    # F32 in the file: the weights (q/k un-permuted) come back bit for bit.
    assert weights_fingerprint(model) == weights_fingerprint(models[100])


def test_a_gguf_file_is_a_series_of_one(gguf_series):
    root, _, _ = gguf_series
    series = resolve_series(root / "step-200.gguf")
    assert series.name == "step-200" and series.steps == [200]
    (c,) = series.checkpoints
    assert (c.source, c.gguf_file, c.tokenizer) == (str(root), "step-200.gguf", None)
    named = resolve_series(str(root / "step-100.gguf"), name="mine")
    assert named.name == "mine" and named.steps == [100]


def test_a_directory_of_step_named_gguf_files(gguf_series):
    root, _, _ = gguf_series
    series = resolve_series(root)  # checks: configs and tokenizers read from the GGUF metadata
    assert series.steps == [100, 200]
    assert [c.gguf_file for c in series] == ["step-100.gguf", "step-200.gguf"]


def test_an_explicit_list_of_gguf_entries(tmp_path, gguf_series):
    root, _, _ = gguf_series
    a, b = str(root / "step-100.gguf"), str(root / "step-200.gguf")
    want = [Checkpoint(1000, str(root), gguf_file="step-200.gguf"),
            Checkpoint(8000, str(root), gguf_file="step-100.gguf")]  # fmt: skip
    forms = [
        [{"step": 8000, "gguf": a}, {"step": 1000, "gguf": b}],
        [{"step": 8000, "path": a}, {"step": 1000, "path": b}],  # a path naming a .gguf file
        [(8000, a), (1000, b)],
        {"name": "g", "checkpoints": [{"step": 8000, "gguf": a}, {"step": 1000, "gguf": b}]},
    ]
    for spec in forms:
        series = resolve_series(spec)
        assert series.steps == [1000, 8000] and series.checkpoints == want, spec
    toml = tmp_path / "s.toml"
    toml.write_text(
        f'name = "t"\n[[checkpoints]]\nstep = 8000\ngguf = "{a}"\n'
        f'[[checkpoints]]\nstep = 1000\ngguf = "{b}"\n'
    )
    assert resolve_series(toml).checkpoints == want
    tok = resolve_series([{"step": 5, "gguf": a, "tokenizer": "elsewhere"}], check=False)
    assert tok.checkpoints == [
        Checkpoint(5, str(root), tokenizer="elsewhere", gguf_file="step-100.gguf")
    ]


def test_the_gguf_example_config_is_a_list_resolve_series_accepts(tmp_path, gguf_series):
    import shutil

    from babelscope.config import load_config

    # A copy of the example in a scratch tree: its relative paths ("../gguf/...") resolve
    # against the file, so the GGUF files it names are put where they point.
    (tmp_path / "examples").mkdir()
    example = tmp_path / "examples" / "gguf.toml"
    shutil.copy(REPO / "examples" / "gguf.toml", example)
    # The files must exist where it points: a missing local path is "not found" at once.
    with pytest.raises(BabelscopeError, match="not found"):
        load_config(example)
    import tomllib

    raw = tomllib.loads(example.read_text())["model"]["series"]
    root, _, _ = gguf_series
    for e, src in zip(raw, ("step-100.gguf", "step-200.gguf"), strict=True):
        dest = example.parent / e["gguf"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / src, dest)
    cfg = load_config(example)
    spec = cfg.model.series
    assert isinstance(spec, list) and all("gguf" in e for e in spec)
    assert all(Path(e["gguf"]).is_relative_to(tmp_path.resolve()) for e in spec)
    series = resolve_series(spec, check=False)
    assert series.steps == [1000, 8000]
    assert [c.gguf_file for c in series] == ["model-step1000.gguf", "model-step8000.gguf"]
    assert resolve_series(spec).steps == [1000, 8000]


def test_load_checkpoint_from_gguf_fingerprints_and_extracts(gguf_series):
    from babelscope.activations.extract import extract_pooled

    root, models, tok = gguf_series
    series = resolve_series(root)
    a = load_checkpoint(series.get(100))
    again = load_checkpoint(series.get(100))
    b = load_checkpoint(series.get(200))
    assert a.family.model_type == "llama" and a.params == sum(
        p.numel() for p in models[100].parameters()
    )
    assert a.fingerprint == again.fingerprint == weights_fingerprint(models[100])
    assert a.fingerprint != b.fingerprint
    assert a.tokenizer(TEXTS[1])["input_ids"] == tok(TEXTS[1])["input_ids"]

    pooled = extract_pooled(a.model, a.tokenizer, TEXTS, kind="mlp", batch_size=4)
    assert pooled.layers == [0, 1] and pooled.n_texts == len(TEXTS)
    assert pooled.get(0).shape == (len(TEXTS), 64) and np.isfinite(pooled.flat()).all()
    # The same numbers as the torch model the file was written from, with its own tokenizer.
    ref = extract_pooled(models[100], tok, TEXTS, kind="mlp", batch_size=4)
    np.testing.assert_allclose(pooled.flat(), ref.flat(), atol=1e-5, rtol=0)
    res = extract_pooled(b.model, b.tokenizer, TEXTS[:2], kind="residual", pooling="last")
    assert res.get(1).shape == (2, 32)

    half = load_checkpoint(series.get(200), dtype="bf16")
    assert next(half.model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "cut", [100, 3000, 0.5, -50, 0], ids=["header", "metadata", "half", "last-bytes", "empty"]
)
def test_a_truncated_gguf_is_a_one_line_error(tmp_path, gguf_series, cut):
    root, _, _ = gguf_series
    data = (root / "step-100.gguf").read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    bad = tmp_path / "step-7.gguf"
    bad.write_bytes(data[:n] if n else b"")
    with pytest.raises(BabelscopeError) as e:
        resolve_series(bad)
    msg = _one_line(e)
    assert "step 7" in msg and "is not a whole GGUF file" in msg
    # Loading it without the series check: still one line, never a traceback.
    with pytest.raises(BabelscopeError) as e:
        load_checkpoint(Checkpoint(7, str(tmp_path), gguf_file=bad.name))
    assert _one_line(e).startswith("cannot load step 7")


def test_other_bad_gguf_input_is_a_one_line_error(tmp_path, gguf_series):
    root, _, _ = gguf_series
    with pytest.raises(BabelscopeError) as e:
        resolve_series([{"step": 1, "gguf": str(tmp_path / "missing.gguf")}])
    assert "no GGUF file" in _one_line(e)
    junk = tmp_path / "step-3.gguf"
    junk.write_bytes(b"not a gguf file at all" * 8)
    with pytest.raises(BabelscopeError) as e:
        resolve_series([{"step": 3, "gguf": str(junk)}, {"step": 4, "gguf": str(junk)}])
    assert "is not a whole GGUF file" in _one_line(e)
    with pytest.raises(BabelscopeError) as e:
        resolve_series(tmp_path / "nothing.gguf")
    assert "nothing.gguf' not found" in _one_line(e)
