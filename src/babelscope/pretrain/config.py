"""The pre-training configuration: a validated TOML file.

Every setting has a default; ``default.toml`` (the embedded study) and ``micro.toml``
(seconds, for tests) sit beside this module. Unknown keys and impossible values are
rejected with a one-line :class:`~babelscope.errors.BabelscopeError`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from babelscope.errors import BabelscopeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
# A byte-level BPE always holds the 256 byte symbols besides the special tokens.
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
MICRO_CONFIG = Path(__file__).with_name("micro.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenizerConfig(_Section):
    """Byte-level BPE trained on the corpus's train split."""

    vocab_size: int = Field(8000, ge=MIN_VOCAB, description="total vocabulary incl. special tokens")
    min_frequency: int = Field(2, ge=1)
    # Cap per language so that English (10x the text) does not own the merges.
    max_chars_per_language: int = Field(400_000, ge=1)


class ModelConfig(_Section):
    """XGLM sizes (transformers.XGLMConfig)."""

    d_model: int = Field(256, ge=2)
    num_layers: int = Field(4, ge=1)
    attention_heads: int = Field(4, ge=1)
    ffn_dim: int = Field(1024, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation_function: Literal["gelu", "relu"] = "gelu"
    init_std: float = Field(0.02, gt=0.0)

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.d_model % self.attention_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by attention_heads ({self.attention_heads})"
            )
        if self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even (sinusoidal positions)")
        return self


class DataConfig(_Section):
    """Sequences and language-balanced sampling."""

    seq_len: int = Field(64, ge=4, description="tokens per training sequence (also max positions)")
    batch_size: int = Field(32, ge=1)
    alpha: float = Field(0.3, ge=0.0, le=1.0, description="p(lang) ∝ share(lang)^alpha")
    eval_sentences: int = Field(64, ge=1, description="held-out sentences per language for eval")


class TrainConfig(_Section):
    """Optimisation: AdamW, linear warm-up then cosine decay, gradient clipping."""

    steps: int = Field(1500, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="final lr / peak lr")
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0.0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.98, ge=0.0, lt=1.0)
    grad_clip: float = Field(1.0, gt=0.0)
    # "auto": on where the CPU has native bf16 (AVX512-BF16 / AMX), where it measured
    # 1.6-1.8x faster per step; elsewhere autocast emulates bf16 and is slower.
    bf16: bool | Literal["auto"] = Field("auto", description="bf16 autocast on CPU")
    threads: int = Field(0, ge=0, description="torch threads; 0 = leave torch's default")


class CheckpointConfig(_Section):
    """Which steps are saved: 0, powers of two, every ``save_every``, the last."""

    save_every: int = Field(500, ge=1)
    powers_of_two: bool = True
    powers_of_two_from: int = Field(
        1, ge=1, description="Smallest power of two saved (earlier steps change little)"
    )
    # Optimizer state doubles a checkpoint's size; resuming needs only the newest.
    keep_training_state: Literal["last", "all"] = "last"
    eval_every: int = Field(100, ge=1, description="held-out loss per language every N steps")


class PretrainConfig(_Section):
    """Everything that decides a pre-training run (its hash names the run)."""

    seed: int = 0
    languages: list[str] | None = Field(
        None, description="ISO 639-3 codes to train on; None = every language in the corpus"
    )
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    checkpoints: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="after")
    def _consistent(self) -> PretrainConfig:
        if self.train.warmup_steps >= self.train.steps and self.train.steps > 1:
            raise ValueError(
                f"train.warmup_steps ({self.train.warmup_steps}) must be below train.steps ({self.train.steps})"
            )
        if self.languages is not None and not self.languages:
            raise ValueError("languages is empty: list at least one ISO 639-3 code or leave it out")
        return self

    def checkpoint_steps(self) -> list[int]:
        """Steps saved as checkpoints, ascending: 0, powers of two, multiples of save_every, last."""
        n = self.train.steps
        steps = {0, n}
        if self.checkpoints.powers_of_two:
            p = 1
            while p < self.checkpoints.powers_of_two_from:
                p *= 2
            while p <= n:
                steps.add(p)
                p *= 2
        steps.update(range(self.checkpoints.save_every, n + 1, self.checkpoints.save_every))
        return sorted(steps)


def _format_error(err: ValidationError, where: str) -> str:
    """The first validation problem as one line: where, which key, what is wrong."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        what = f"unknown key '{loc}'"
        fix = "remove it or check its spelling (see pretrain/default.toml)"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        what = f"{loc}: {msg}" if loc else msg
        fix = "fix the value"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {what}{more}; {fix}"


def parse_pretrain_config(data: dict[str, Any], where: str = "pretrain config") -> PretrainConfig:
    """Validate a mapping (e.g. parsed TOML) into a :class:`PretrainConfig`."""
    try:
        return PretrainConfig.model_validate(data)
    except ValidationError as e:
        raise BabelscopeError(_format_error(e, where)) from None


def load_pretrain_config(path: str | Path | None = None) -> PretrainConfig:
    """Read and validate a TOML pre-training config; ``None`` gives the embedded default."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        raise BabelscopeError(f"no config file at {p}: pass an existing TOML file to --config")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise BabelscopeError(f"{p}: not valid TOML ({e})") from None
    return parse_pretrain_config(data, where=str(p))
