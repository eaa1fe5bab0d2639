"""Batched activation extraction: pooled per sentence, or per token at sampled positions.

How it works: texts are tokenized once, sorted by length and cut into batches (so a batch
holds texts of similar length and little padding), run through the *base* model (no LM
head: its logits are not needed) with hooks at the unit kind's points (see
:mod:`babelscope.activations.neurons`). Each hook pools its value on the spot, so the
per-token tensors of a layer live only while that layer runs; results go back to the
texts' original order.

Rules that make results exact and comparable:

- **Padding never takes part.** Batches are padded on the right by default: with causal
  attention real tokens never see the padding and keep positions 0..n-1, so a batch gives
  the numbers of the same texts one at a time (up to float rounding). Left padding
  (``padding_side="left"``) passes position ids and gives the same result.
- **Special tokens are not pooled or sampled** (BOS, EOS…): they carry no text and would
  pull every sentence toward the same vector. A text made of special tokens only is pooled
  over all its tokens.
- **Texts longer than the context are truncated** to ``max_length`` (default: the model's
  context) and counted in ``n_truncated``; none is dropped.
- Results are float32 NumPy arrays whatever the model dtype.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from babelscope.activations.dtypes import Decoded, encode, storage_dtype
from babelscope.activations.families import family_of, get_module
from babelscope.activations.neurons import (
    HookPoint,
    UnitKind,
    hook_points,
    hooked,
    layer_widths,
    layers_of,
)
from babelscope.checkpoints.series import resolve_device
from babelscope.errors import BabelscopeError

Pooling = Literal["mean", "max", "last"]
POOLINGS: tuple[str, ...] = ("mean", "max", "last")


class _ByLayer:
    """``get(layer)`` for the per-layer arrays of an extraction result."""

    layers: list[int]
    arrays: dict[int, np.ndarray]

    def get(self, layer: int) -> np.ndarray:
        if layer not in self.arrays:
            raise BabelscopeError(
                f"layer {layer} was not extracted: available layers {self.layers}"
            )
        return self.arrays[layer]


@dataclass
class PooledActivations(_ByLayer):
    """Pooled activations per layer: ``get(layer)`` is float32 ``(n_texts, width)``.

    For kinds with several points per layer (``linear_all``) a layer's array is the
    concatenation of its points in :func:`hook_points` order.
    """

    layers: list[int]
    widths: dict[int, int]
    arrays: dict[int, np.ndarray]
    n_texts: int
    n_truncated: int = 0
    kind: str = "mlp"
    pooling: str = "mean"
    n_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> np.ndarray:
        """All layers side by side, ``(n_texts, total units)``: the model-wide flat unit index."""
        return np.concatenate([self.arrays[layer] for layer in self.layers], axis=1)


@dataclass
class TokenSamples(_ByLayer):
    """Vectors at sampled token positions: ``get(layer)`` is float32 ``(n_tokens, width)``.

    ``sentence_index[t]`` is the text a token comes from (index into the input texts),
    ``position[t]`` its position in the tokenized text, ``token_id[t]`` the token.
    Tokens are ordered by text, then position.
    """

    layers: list[int]
    widths: dict[int, int]
    arrays: dict[int, np.ndarray]
    sentence_index: np.ndarray
    position: np.ndarray
    token_id: np.ndarray
    n_texts: int
    n_truncated: int = 0
    kind: str = "residual"
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Tokenization and batching
# ---------------------------------------------------------------------------------------


def context_length(model: torch.nn.Module, tokenizer: Any = None) -> int | None:
    """The longest input the model takes (config positions, tokenizer limit), or None."""
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    limits = [
        int(v)
        for name in ("n_positions", "max_position_embeddings", "seq_length")
        if isinstance(v := getattr(cfg, name, None), int) and v > 0
    ]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:  # HF uses ~1e30 for "no limit"
        limits.append(tok_max)
    return min(limits) if limits else None


@dataclass
class _Encoded:
    ids: list[list[int]]
    content: list[np.ndarray]  # bool mask per text: True where the token is not special
    n_truncated: int


def _encode(tokenizer: Any, texts: Sequence[str], max_length: int | None) -> _Encoded:
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise BabelscopeError(
            f"texts must be strings: item {bad[0]} is {type(texts[bad[0]]).__name__}"
        )
    enc = (
        tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        if texts
        else []
    )
    special = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
    ids, content, n_trunc = [], [], 0
    for i, row in enumerate(enc):
        if max_length is not None and len(row) > max_length:
            row, n_trunc = row[:max_length], n_trunc + 1
        if not row:
            raise BabelscopeError(
                f"text {i} gives no tokens (empty text and no special tokens): remove it"
            )
        mask = ~np.isin(np.asarray(row, dtype=np.int64), special)
        if not mask.any():  # only special tokens: pool over them rather than over nothing
            mask[:] = True
        ids.append(list(row))
        content.append(mask)
    return _Encoded(ids, content, n_trunc)


def _batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Text indices in batches of similar length (longest first: memory peaks show up early)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class _StopForward(Exception):
    """Raised by the last needed hook: the rest of the model need not run."""


@dataclass
class _Runner:
    """Runs the base model on padded batches with hooks; shared by both extraction modes."""

    model: torch.nn.Module
    points: list[HookPoint]
    device: torch.device
    pad_id: int
    padding_side: str
    base: torch.nn.Module = field(init=False)
    takes_positions: bool = field(init=False)

    def __post_init__(self) -> None:
        spec = family_of(self.model)
        self.base = get_module(self.model, spec.base)
        self.takes_positions = "position_ids" in inspect.signature(self.base.forward).parameters
        self.last_point = self.points[-1]

    def pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Pad ``rows``; return ids, attention mask and the offset of real tokens per row."""
        n, t = len(rows), max(len(r) for r in rows)
        ids = torch.full((n, t), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, t), dtype=torch.long)
        for i, r in enumerate(rows):
            if self.padding_side == "left":
                ids[i, t - len(r) :], mask[i, t - len(r) :] = torch.tensor(r), 1
            else:
                ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        return ids, mask, t

    def run(self, ids: torch.Tensor, mask: torch.Tensor, on_value) -> None:
        """Forward ``ids``; ``on_value(point, value (B, T, W))`` at each point."""
        b, t = ids.shape
        kwargs: dict[str, Any] = dict(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
        )
        if self.takes_positions and self.padding_side == "left":
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0).to(self.device)

        def fn(point: HookPoint, value: torch.Tensor) -> None:
            on_value(point, value.reshape(b, t, -1))
            if point is self.last_point:
                raise _StopForward

        with torch.inference_mode(), hooked(self.points, fn), contextlib.suppress(_StopForward):
            self.base(**kwargs, use_cache=False)


def _prepare(model, tokenizer, texts, kind, layers, max_length, device, padding_side):
    if padding_side not in ("right", "left"):
        raise BabelscopeError(f"padding_side must be 'right' or 'left', not '{padding_side}'")
    dev = resolve_device(device, model)
    if resolve_device(None, model) != dev:
        model.to(dev)
    model.eval()
    points = hook_points(model, kind, layers)
    if max_length is None:
        max_length = context_length(model, tokenizer)
    enc = _encode(tokenizer, texts, max_length)
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    return _Runner(model, points, dev, pad_id, padding_side), enc


def extract_pooled(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    kind: UnitKind = "mlp",
    pooling: Pooling = "mean",
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | torch.device | None = None,
    padding_side: Literal["right", "left"] = "right",
    store_dtype: str = "float32",
) -> PooledActivations:
    """Pool the units of ``kind`` over each text's tokens (masked ``mean``, ``max`` or ``last``).

    Returns float32 arrays ``(len(texts), width)`` per layer, in the order of ``texts``.
    ``store_dtype`` ``float16``/``bfloat16`` holds them in half precision (half the memory;
    :mod:`babelscope.activations.dtypes`) and reads them back as float32.
    """
    if pooling not in POOLINGS:
        raise BabelscopeError(f"unknown pooling '{pooling}': choose from {', '.join(POOLINGS)}")
    if batch_size < 1:
        raise BabelscopeError(f"batch_size must be at least 1, not {batch_size}")
    runner, enc = _prepare(model, tokenizer, texts, kind, layers, max_length, device, padding_side)
    points = runner.points
    widths = layer_widths(points)
    n = len(enc.ids)
    out = {
        k: np.zeros((n, p.width), dtype=storage_dtype(store_dtype)) for k, p in enumerate(points)
    }
    index = {id(p): k for k, p in enumerate(points)}
    n_tokens = 0
    for rows in _batches([len(r) for r in enc.ids], batch_size):
        ids, mask, t = runner.pad([enc.ids[i] for i in rows])
        # Content mask in padded coordinates: padding and special tokens are 0.
        cmask = torch.zeros(ids.shape, dtype=torch.bool)
        for j, i in enumerate(rows):
            c = torch.from_numpy(enc.content[i])
            if runner.padding_side == "left":
                cmask[j, t - len(c) :] = c
            else:
                cmask[j, : len(c)] = c
        n_tokens += int(mask.sum())
        pooler = _pooler(pooling, cmask.to(runner.device))

        def pool(point: HookPoint, value: torch.Tensor, rows=rows, pooler=pooler) -> None:
            out[index[id(point)]][rows] = encode(pooler(value.to(torch.float32)), store_dtype)

        runner.run(ids, mask, pool)
    arrays = _by_layer(points, out)
    if store_dtype != "float32":
        arrays = Decoded(arrays, store_dtype)
    return PooledActivations(
        layers=layers_of(points),
        widths=widths,
        arrays=arrays,
        n_texts=n,
        n_truncated=enc.n_truncated,
        kind=kind,
        pooling=pooling,
        n_tokens=n_tokens,
    )


def _pooler(pooling: str, cm: torch.Tensor):
    """A function pooling a ``(B, T, W)`` value over the tokens where ``cm`` (B, T) is True."""
    if pooling == "mean":
        weights = (cm / cm.sum(1, keepdim=True)).to(torch.float32)
        # Zero the padding first: a zero weight times NaN/inf (padded rows that attend to
        # nothing, fp16 overflow) would still be NaN.
        return lambda v: torch.einsum("btw,bt->bw", v.masked_fill(~cm[:, :, None], 0), weights)
    if pooling == "max":
        return lambda v: v.masked_fill(~cm[:, :, None], float("-inf")).amax(1)
    pos = torch.arange(cm.shape[1], device=cm.device).expand_as(cm)
    last = torch.where(cm, pos, -1).amax(1)
    sel = torch.arange(cm.shape[0], device=cm.device)
    return lambda v: v[sel, last]


def _by_layer(points: list[HookPoint], out: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    arrays: dict[int, np.ndarray] = {}
    for layer in layers_of(points):
        parts = [out[k] for k, p in enumerate(points) if p.layer == layer]
        arrays[layer] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return arrays


def sample_positions(
    content: np.ndarray, tokens_per_text: int | None, seed: int, text_index: int
) -> np.ndarray:
    """Positions sampled from one text's content tokens, sorted.

    Seeded by ``(seed, text_index)`` so that a text's sample does not depend on batching,
    sharding or the other texts.
    """
    positions = np.flatnonzero(content)
    if tokens_per_text is None or len(positions) <= tokens_per_text:
        return positions
    rng = np.random.default_rng([seed, text_index])
    return np.sort(rng.choice(positions, size=tokens_per_text, replace=False))


def extract_token_samples(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    kind: UnitKind = "residual",
    tokens_per_text: int | None = None,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    device: str | torch.device | None = None,
    padding_side: Literal["right", "left"] = "right",
    index_offset: int = 0,
) -> TokenSamples:
    """Per-token vectors at sampled positions of every text, for all layers in one pass.

    ``tokens_per_text=None`` keeps every content token (special tokens are skipped);
    an int samples up to that many positions per text, seeded by ``(seed, text index)``
    (``index_offset`` is added to the text index: a shard of a longer list samples what
    the whole list would).
    """
    if tokens_per_text is not None and tokens_per_text < 1:
        raise BabelscopeError(
            f"tokens_per_text must be at least 1 (or None for all), not {tokens_per_text}"
        )
    runner, enc = _prepare(model, tokenizer, texts, kind, layers, max_length, device, padding_side)
    points = runner.points
    index = {id(p): k for k, p in enumerate(points)}
    sampled = [
        sample_positions(c, tokens_per_text, seed, i + index_offset)
        for i, c in enumerate(enc.content)
    ]
    starts = np.concatenate([[0], np.cumsum([len(s) for s in sampled])]).astype(np.int64)
    total = int(starts[-1])
    out = {k: np.zeros((total, p.width), dtype=np.float32) for k, p in enumerate(points)}
    for rows in _batches([len(r) for r in enc.ids], batch_size):
        ids, mask, t = runner.pad([enc.ids[i] for i in rows])
        b_idx = np.concatenate([np.full(len(sampled[i]), j) for j, i in enumerate(rows)])
        shift = [t - len(enc.ids[i]) if runner.padding_side == "left" else 0 for i in rows]
        p_idx = np.concatenate([sampled[i] + shift[j] for j, i in enumerate(rows)])
        dest = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in rows])
        if len(dest) == 0:
            continue
        bi = torch.from_numpy(b_idx.astype(np.int64)).to(runner.device)
        pi = torch.from_numpy(p_idx.astype(np.int64)).to(runner.device)

        def gather(point: HookPoint, value: torch.Tensor, dest=dest, bi=bi, pi=pi) -> None:
            out[index[id(point)]][dest] = value[bi, pi].to(torch.float32).cpu().numpy()

        runner.run(ids, mask, gather)
    sentence = np.repeat(np.arange(len(sampled), dtype=np.int64), [len(s) for s in sampled])
    position = np.concatenate(sampled).astype(np.int64) if sampled else np.zeros(0, dtype=np.int64)
    token_id = np.asarray(
        [enc.ids[s][p] for s, p in zip(sentence, position, strict=True)], dtype=np.int64
    )
    return TokenSamples(
        layers=layers_of(points),
        widths=layer_widths(points),
        arrays=_by_layer(points, out),
        sentence_index=sentence,
        position=position,
        token_id=token_id,
        n_texts=len(enc.ids),
        n_truncated=enc.n_truncated,
        kind=kind,
    )
