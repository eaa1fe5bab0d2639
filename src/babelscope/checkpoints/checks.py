"""Checks of a checkpoint series before anything is loaded: weights and tokenizer files
present, one architecture, one tokenizer (configs and tokenizers are read, weights are
not). Each failure is a one-line :class:`~babelscope.errors.BabelscopeError`.
:func:`babelscope.checkpoints.series.resolve_series` runs them by default.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

from babelscope.checkpoints.series import (
    TOKENIZER_FILES,
    Checkpoint,
    CheckpointSeries,
    _first_line,
    _has_tokenizer,
    _has_weights,
    _load_tokenizer,
)
from babelscope.errors import BabelscopeError


def _config(c: Checkpoint) -> Any:
    from transformers import AutoConfig

    try:
        kw: dict[str, Any] = {"revision": c.revision} if c.revision else {}
        if c.gguf_file:
            kw["gguf_file"] = c.gguf_file
        return AutoConfig.from_pretrained(c.source, **kw)
    except (OSError, ValueError, IndexError, struct.error) as e:
        raise BabelscopeError(f"cannot read the config of {c.label}: {_first_line(e)}") from None


def architecture_signature(config: Any) -> str:
    """What must agree across a series: family, depth, widths, vocabulary size."""
    cfg = getattr(config, "text_config", None) or config

    def first(*names: str) -> Any:
        return next((getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None), "?")

    return (
        f"{config.model_type} ({first('num_hidden_layers', 'n_layer', 'num_layers')} layers, "
        f"hidden {first('hidden_size', 'n_embd', 'd_model')}, "
        f"mlp {first('intermediate_size', 'ffn_dim', 'n_inner')}, vocab {first('vocab_size')})"
    )


def tokenizer_signature(tokenizer: Any) -> str:
    """Hash of the vocabulary and the special tokens."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted(map(str, tokenizer.all_special_tokens))
    return hashlib.sha256(json.dumps([vocab, special], ensure_ascii=False).encode()).hexdigest()[
        :16
    ]


def _disagreement(what: str, sig_by_step: dict[int, str]) -> None:
    groups: dict[str, list[int]] = {}
    for step, sig in sig_by_step.items():
        groups.setdefault(sig, []).append(step)
    if len(groups) > 1:
        parts = [
            f"step{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}: {sig}"
            for sig, s in groups.items()
        ]
        raise BabelscopeError(
            f"checkpoints disagree on {what} ({'; '.join(parts)}): a series must be one model"
        )


def _check_gguf(c: Checkpoint) -> None:
    """A local GGUF file exists and its header and tensor table fit in it (weights not read)."""
    path = Path(c.source) / str(c.gguf_file)
    if not path.is_file():
        raise BabelscopeError(f"{c.label}: no GGUF file {path}")
    try:
        from gguf import GGUFReader
    except ImportError:  # transformers says what to install when it loads the file
        return
    try:
        GGUFReader(str(path))
    except (OSError, ValueError, KeyError, IndexError, struct.error) as e:
        raise BabelscopeError(
            f"{c.label}: {path} is not a whole GGUF file (truncated or corrupt: {_first_line(e)}); "
            "download or convert it again"
        ) from None


def _check_tokenizer_files(c: Checkpoint) -> None:
    """A local checkpoint needs tokenizer files (its own, or the series' ``tokenizer``):
    without them transformers builds an empty tokenizer and every perplexity is noise."""
    if c.gguf_file:
        return  # a GGUF file carries its tokenizer
    tok = c.tokenizer
    if tok is None:
        if c.is_local and not _has_tokenizer(Path(c.source)):
            raise BabelscopeError(
                f"{c.label} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}...): save "
                "the tokenizer beside the weights, or give the series a 'tokenizer'"
            )
        return
    p = Path(tok)
    if p.exists() and not (p.is_dir() and _has_tokenizer(p)):
        raise BabelscopeError(f"{c.label}: tokenizer '{tok}' holds no tokenizer files")
    if not p.exists() and (c.is_local or not re.fullmatch(r"[\w.-]+/[\w.-]+", tok)):
        raise BabelscopeError(f"{c.label}: tokenizer '{tok}' not found: fix the path")


def check_series(series: CheckpointSeries) -> None:
    """Weights present (local), one architecture, one tokenizer — else a one-line error."""
    for c in series:
        if c.is_local and c.gguf_file:
            _check_gguf(c)
        if c.is_local and not c.gguf_file:
            d = Path(c.source)
            if not d.is_dir():
                raise BabelscopeError(f"{c.label}: {d} is not a directory")
            if not _has_weights(d):
                raise BabelscopeError(
                    f"{c.label} has no weights in {d} (no *.safetensors or pytorch_model*.bin): "
                    "save it with model.save_pretrained() or remove it from the series"
                )
        _check_tokenizer_files(c)
    if len(series) < 2:
        return
    _disagreement("architecture", {c.step: architecture_signature(_config(c)) for c in series})
    tok_sources = {
        (c.tokenizer or c.source, c.revision if not c.tokenizer else None, c.gguf_file)
        for c in series
    }
    if len(tok_sources) > 1:
        _disagreement(
            "tokenizer", {c.step: tokenizer_signature(_load_tokenizer(c)) for c in series}
        )
