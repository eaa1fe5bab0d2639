"""The pre-training configuration: defaults, validation, one-line errors, schedule."""

from __future__ import annotations

import pytest

from babelscope.errors import BabelscopeError
from babelscope.pretrain import (
    DEFAULT_CONFIG,
    MICRO_CONFIG,
    load_pretrain_config,
    parse_pretrain_config,
)
from babelscope.pretrain.config import MIN_VOCAB
from babelscope.pretrain.train import _lr_factor


def test_embedded_default_and_micro_load():
    default = load_pretrain_config(None)
    assert default == load_pretrain_config(DEFAULT_CONFIG)
    assert default.data.alpha == 0.3 and default.languages is None
    steps = default.checkpoint_steps()
    assert steps[0] == 0 and steps[-1] == default.train.steps
    assert steps == [0, 64, 128, 256, 512, 1024, 1536]  # powers of two from 64
    micro = load_pretrain_config(MICRO_CONFIG)
    assert micro.train.steps < 50 and micro.model.num_layers <= 2


def test_checkpoint_steps_union():
    cfg = parse_pretrain_config(
        {"train": {"steps": 20, "warmup_steps": 2}, "checkpoints": {"save_every": 6}}
    )
    assert cfg.checkpoint_steps() == [0, 1, 2, 4, 6, 8, 12, 16, 18, 20]
    cfg = parse_pretrain_config(
        {
            "train": {"steps": 20, "warmup_steps": 2},
            "checkpoints": {"save_every": 10, "powers_of_two": False},
        }
    )
    assert cfg.checkpoint_steps() == [0, 10, 20]
    cfg = parse_pretrain_config(
        {"train": {"steps": 20, "warmup_steps": 2}, "checkpoints": {"powers_of_two_from": 4}}
    )
    assert cfg.checkpoint_steps() == [0, 4, 8, 16, 20]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"model": {"num_layer": 4}}, "unknown key 'model.num_layer'"),
        ({"lr": 0.1}, "unknown key 'lr'"),
        ({"model": {"num_layers": 0}}, "model.num_layers"),
        ({"tokenizer": {"vocab_size": 3}}, "tokenizer.vocab_size"),
        ({"model": {"d_model": 100, "attention_heads": 3}}, "divisible by attention_heads"),
        ({"data": {"alpha": 1.5}}, "data.alpha"),
        ({"train": {"steps": 10, "warmup_steps": 10}}, "warmup_steps"),
        ({"train": {"bf16": "sometimes"}}, "train.bf16"),
        ({"languages": []}, "languages is empty"),
    ],
)
def test_bad_values_give_one_line_errors(data, match):
    with pytest.raises(BabelscopeError, match=match) as e:
        parse_pretrain_config(data)
    assert "\n" not in str(e.value)


def test_vocab_floor_is_special_tokens_plus_bytes():
    assert MIN_VOCAB == 260
    parse_pretrain_config({"tokenizer": {"vocab_size": MIN_VOCAB}})
    with pytest.raises(BabelscopeError, match="greater than or equal to 260"):
        parse_pretrain_config({"tokenizer": {"vocab_size": MIN_VOCAB - 1}})


def test_bad_files(tmp_path):
    with pytest.raises(BabelscopeError, match="no config file"):
        load_pretrain_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nd_model = 1")
    with pytest.raises(BabelscopeError, match="not valid TOML"):
        load_pretrain_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nstepz = 3\n")
    with pytest.raises(BabelscopeError, match=r"unknown\.toml: unknown key 'train\.stepz'"):
        load_pretrain_config(unknown)


def test_lr_schedule_warmup_then_cosine_to_floor():
    f = [_lr_factor(s, warmup=10, total=100, min_ratio=0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10], strict=False))
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[100] == pytest.approx(0.1)
