"""Series inspection: duplicates, broken checkpoints, usable steps, the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from babelscope.checkpoints.inspect import inspect_series, usable
from babelscope.checkpoints.series import resolve_series
from babelscope.errors import BabelscopeError
from helpers import TINY_TEXTS

TEXTS = {lang: sents[6:] for lang, sents in TINY_TEXTS.items()}


def _scale_weights(src, dst, factor: float | None = None, nan: bool = False):
    """Copy a checkpoint, multiplying its weights (a broken checkpoint) or putting a NaN in."""
    from transformers import AutoModelForCausalLM

    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(dst)
    with torch.no_grad():
        for p in model.parameters():
            if factor is not None:
                p.mul_(factor)
        if nan:
            next(iter(model.parameters())).view(-1)[0] = float("nan")
    model.save_pretrained(dst)


@pytest.fixture(scope="module")
def flawed_series(tmp_path_factory, tiny_series_dir):
    """step 0, 1, 2 fine; 3 a byte copy of 1; 4 with exploded weights; 5 with a NaN; 6 fine."""
    root = tmp_path_factory.mktemp("flawed")
    for i in range(3):
        shutil.copytree(tiny_series_dir / f"step-{i}", root / f"step-{i}")
    shutil.copytree(tiny_series_dir / "step-1", root / "step-3")
    _scale_weights(tiny_series_dir / "step-2", root / "step-4", factor=40.0)
    _scale_weights(tiny_series_dir / "step-2", root / "step-5", nan=True)
    shutil.copytree(tiny_series_dir / "step-0", root / "step-6")
    return root


def test_flags_duplicates_and_broken_checkpoints(flawed_series):
    df = inspect_series(resolve_series(flawed_series), TEXTS)
    assert df["step"].tolist() == list(range(7))
    assert {f"ppl_{lang}" for lang in TEXTS} <= set(df.columns) and (df["params"] > 0).all()
    flags = dict(zip(df["step"], df["flags"], strict=True))
    assert flags[0] == flags[1] == flags[2] == ""
    assert flags[3] == "duplicate_of:1"
    assert flags[4] == "broken:perplexity"
    assert "broken:nonfinite" in flags[5]
    assert flags[6] == "duplicate_of:0"
    assert usable(df) == [0, 1, 2]
    # Duplicates and perplexity outliers can be kept; NaN weights cannot be analysed, and
    # keeping them is a one-line error naming the step (not a traceback stages later).
    with pytest.raises(BabelscopeError, match=r"include_flagged keeps step 5 \(broken:nonfinite"):
        usable(df, include_flagged=True)
    assert usable(df[df["step"] != 5], include_flagged=True) == [0, 1, 2, 3, 4, 6]


@pytest.mark.parametrize("damage", ["truncated", "zero-bytes", "garbage-header"])
def test_a_broken_weight_file_is_a_flagged_checkpoint(tiny_series_dir, tmp_path, damage):
    series = tmp_path / "series"
    shutil.copytree(tiny_series_dir, series)
    f = series / "step-1" / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(
        {"truncated": data[: len(data) // 2], "zero-bytes": b"",
         "garbage-header": b"\xff" * 8 + data[8:]}[damage]
    )  # fmt: skip
    df = inspect_series(resolve_series(series), TEXTS)
    flags = dict(zip(df["step"], df["flags"], strict=True))
    assert flags == {0: "", 1: "broken:unreadable", 2: ""}
    assert "cannot load step 1" in df.loc[df["step"] == 1, "error"].iloc[0]
    assert usable(df) == [0, 2]


def _cli(argv: list[str]) -> None:
    from babelscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code in (0, None)


def test_cli_prints_a_table_or_json_and_writes_only_with_out(flawed_series, tmp_path, capsys):
    series = tmp_path / "s"
    for i in (0, 3):
        shutil.copytree(flawed_series / f"step-{i}", series / f"step-{i}")
    before = sorted(p.name for p in series.rglob("*"))
    _cli(["checkpoints", "inspect", str(series), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in out["checkpoints"]] == [0, 3]
    _cli(["checkpoints", "inspect", str(series)])
    assert "fingerprint" in capsys.readouterr().out
    assert sorted(p.name for p in series.rglob("*")) == before
    _cli(["checkpoints", "inspect", str(series), "--out", str(tmp_path / "i.json")])
    saved = json.loads((tmp_path / "i.json").read_text())
    assert saved["provenance"]["stage"] == "checkpoints.inspect" and len(saved["checkpoints"]) == 2


def test_cli_error_is_one_line(tmp_path, capsys):
    from babelscope.cli import main

    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        main(["checkpoints", "inspect", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot parse a step") and "\n" not in err


def test_apply_inspection_skips_flagged_steps(tiny_series_dir, tmp_path):
    import json

    from babelscope.checkpoints.inspect import apply_inspection
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(tiny_series_dir)
    # No inspection yet: nothing is known, nothing is left out.
    assert apply_inspection(series, tmp_path).steps == [0, 1, 2]
    (tmp_path / "checkpoints.json").write_text(
        json.dumps({"checkpoints": [
            {"step": 0, "flags": ""}, {"step": 1, "flags": "duplicate_of:0"}, {"step": 2, "flags": []},
        ]})
    )  # fmt: skip
    assert apply_inspection(series, tmp_path).steps == [0, 2]
    assert apply_inspection(series, tmp_path, include_flagged=True).steps == [0, 1, 2]


def _old_nll(model, tok, texts, batch_size=16):
    """The former computation: a float32 log-softmax over the whole padded batch."""
    total, count = 0.0, 0
    enc = tok(list(texts), add_special_tokens=True, truncation=True, max_length=256)["input_ids"]
    pad = tok.pad_token_id
    with torch.inference_mode():
        for i in range(0, len(enc), batch_size):
            seqs = enc[i : i + batch_size]
            t = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), t), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, s in enumerate(seqs):
                ids[j, : len(s)], mask[j, : len(s)] = torch.tensor(s), 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -lp.gather(-1, ids[:, 1:, None])[..., 0]
            m = mask[:, 1:].bool()
            total += float(nll[m].sum())
            count += int(m.sum())
    return total, count


@pytest.mark.parametrize("family", ["xglm", "gpt2", "opt_proj", "gemma2"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_chunked_loss_equals_the_full_log_softmax(tiny_series_dir, monkeypatch, family, dtype):
    """Per-chunk cross-entropy through the output head gives the old full-vocabulary
    log-softmax's numbers (OPT's project_out and Gemma 2's logit cap included)."""
    from transformers import AutoTokenizer

    from babelscope.activations.families import family_of
    from babelscope.checkpoints import inspect as insp
    from babelscope.checkpoints.series import LoadedCheckpoint, torch_dtype
    from helpers_models import tiny_family_model

    tok = AutoTokenizer.from_pretrained(tiny_series_dir / "step-0")
    model = tiny_family_model(family, vocab_size=len(tok)).to(torch_dtype(dtype))
    loaded = LoadedCheckpoint(0, model, tok, family_of(model), "fp")
    texts = [t for sents in TEXTS.values() for t in sents]
    # 16 positions per chunk (the floor): every batch spans several chunks.
    monkeypatch.setattr(insp, "LOGIT_CHUNK_BYTES", 1)
    new, n_new = insp._nll(loaded, texts, batch_size=5)
    old, n_old = _old_nll(model, tok, texts, batch_size=5)
    assert n_new == n_old > 100
    assert new == pytest.approx(old, rel=1e-6)  # measured: 1e-8 to 7e-8


def test_rows_report_tokens_and_throughput(tiny_series_dir):
    df = inspect_series(resolve_series(tiny_series_dir), TEXTS)
    assert (df["tokens"] > 0).all() and (df["tokens_per_s"] > 0).all()
    assert (df["tokens"] == df["tokens"].iloc[0]).all()  # same texts, same tokenizer
    assert (df["seconds"] > 0).all()
