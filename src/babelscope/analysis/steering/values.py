"""Forcing values that fit how the units were scored: token-level statistics per unit.

Experts are ranked on sentence means, so their shard statistic ``on_p50`` (the median of
the positives' sentence means) is about a unit's firing value divided by the sentence
length when the unit fires on the concept word only. Forcing that value at every token
under-drives such a unit. So at each steered checkpoint the units are measured again,
token by token, on the source language's pool:

- on the **positive sentences** of each concept, for its top experts only: the median over
  all their tokens (``token``) and the median of the per-sentence maxima (``max``);
- on **background sentences** (pool sentences positive for none of the steered concepts),
  for every unit: the mean over tokens (the ``token`` off value), the mean of the
  per-sentence maxima (the ``max`` off value) and the standard deviation over tokens (the
  unit's usual spread, the yardstick of the random baseline's shift).

Special tokens (BOS/EOS) are left out, as in pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from babelscope.errors import BabelscopeError

_EPS = 1e-6  # a unit that never varies: its spread counts as this, not zero


@dataclass
class UnitValues:
    """Token-level statistics of one (checkpoint, language) over the flat unit index."""

    lang: str
    layers: list[int]
    widths: list[int]
    off_token: np.ndarray  # (units,) mean over background tokens
    off_max: np.ndarray  # (units,) mean over background sentences of their maximum
    spread: np.ndarray  # (units,) standard deviation over background tokens
    on_token: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # concept -> (units,), NaN unmeasured
    on_max: dict[str, np.ndarray] = field(default_factory=dict)
    n_background: int = 0
    n_positive: dict[str, int] = field(default_factory=dict)

    def on_off(
        self, scores: Any, concept: str, statistic: str, flat: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(on, off) of the flat units under ``statistic`` for ``concept``.

        ``pooled`` reads the expert scores (``on_p50``, ``off_mean``); ``token`` and
        ``max`` the measurements here. An unmeasured unit is an error, not a silent NaN.
        """
        if statistic == "pooled":
            return (
                np.asarray(scores.on_p50, dtype=np.float64)[flat],
                np.asarray(scores.off_mean, dtype=np.float64)[flat],
            )
        table = {"token": (self.on_token, self.off_token), "max": (self.on_max, self.off_max)}
        if statistic not in table:
            raise BabelscopeError(
                f"unknown forcing statistic '{statistic}': use pooled, token or max"
            )
        ons, off = table[statistic]
        if concept not in ons:
            raise BabelscopeError(f"no {statistic} values for concept '{concept}' in {self.lang}")
        on = ons[concept][flat]
        if np.isnan(on).any():
            raise BabelscopeError(
                f"{int(np.isnan(on).sum())} forced unit(s) of '{concept}' were not measured: "
                "measure_values needs every forced unit in `needed`"
            )
        return on.astype(np.float64), off[flat].astype(np.float64)

    def off(self, scores: Any, statistic: str, flat: np.ndarray) -> np.ndarray:
        """The off value of any unit (random units are not experts of anything)."""
        if statistic == "pooled":
            return np.asarray(scores.off_mean, dtype=np.float64)[flat]
        return (self.off_token if statistic == "token" else self.off_max)[flat].astype(np.float64)


def _point_offsets(points: Sequence[Any]) -> list[int]:
    """Flat index of unit 0 of each hook point (points of a layer are contiguous)."""
    from babelscope.activations.neurons import layers_of, unit_offsets

    layer_start = dict(zip(layers_of(points), unit_offsets(points)[:-1], strict=True))
    used: dict[int, int] = {}
    out = []
    for p in points:
        out.append(int(layer_start[p.layer]) + used.get(p.layer, 0))
        used[p.layer] = used.get(p.layer, 0) + p.width
    return out


def _encode(
    tokenizer: Any, texts: Sequence[str], max_length: int | None
) -> list[tuple[list[int], np.ndarray]]:
    special = set(tokenizer.all_special_ids)
    rows = []
    for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        ids = list(ids)[:max_length] if max_length else list(ids)
        content = np.array([i not in special for i in ids], dtype=bool)
        if not content.any():
            content[:] = True
        rows.append((ids, content))
    return rows


def _forward_batches(
    model: Any, tokenizer: Any, texts: Sequence[str], points: Sequence[Any], batch_size: int
):
    """Yield ``(values per point (B, T, W) float32, content mask (B, T) bool)`` per batch."""
    from babelscope.activations.extract import context_length
    from babelscope.activations.families import family_of, get_module
    from babelscope.activations.neurons import hooked

    # The base model only: the units are read before the output head, whose logits over
    # the whole vocabulary would cost more than everything else here.
    base = get_module(model, family_of(model).base)
    device = next(model.parameters()).device
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    rows = _encode(tokenizer, texts, context_length(model, tokenizer))
    index = {id(p): j for j, p in enumerate(points)}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        t = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), t), int(pad), dtype=torch.long)
        mask = torch.zeros((len(chunk), t), dtype=torch.long)
        content = torch.zeros((len(chunk), t), dtype=torch.bool)
        for j, (r, c) in enumerate(chunk):
            ids[j, : len(r)], mask[j, : len(r)] = torch.tensor(r), 1
            content[j, : len(r)] = torch.from_numpy(c)
        got: dict[int, torch.Tensor] = {}

        def record(point: Any, value: torch.Tensor, b=len(chunk), t=t, got=got) -> None:
            got[index[id(point)]] = value.reshape(b, t, -1).float().cpu()

        with torch.inference_mode(), hooked(points, record):
            base(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
        yield [got[j] for j in range(len(points))], content


def measure_values(
    model: Any,
    tokenizer: Any,
    lang: str,
    background: Sequence[str],
    positives: dict[str, Sequence[str]],
    needed: dict[str, np.ndarray],
    *,
    kind: str = "mlp",
    batch_size: int = 16,
) -> UnitValues:
    """Measure :class:`UnitValues` of ``lang`` on ``model``.

    ``background``: texts positive for none of the concepts; ``positives[c]``: the
    positive texts of concept ``c``; ``needed[c]``: the flat units whose on values are
    wanted for ``c`` (its top experts).
    """
    from babelscope.activations.neurons import hook_points, layer_widths, layers_of

    if not background:
        raise BabelscopeError(f"no background sentences in {lang} to measure unit spreads on")
    points = hook_points(model, kind)
    starts = _point_offsets(points)
    widths_by_layer = layer_widths(points)
    layers = layers_of(points)
    total = sum(p.width for p in points)
    was_training = model.training
    model.eval()
    try:
        s1, s2 = np.zeros(total), np.zeros(total)
        smax, n_tok = np.zeros(total), 0
        for vals, content in _forward_batches(model, tokenizer, background, points, batch_size):
            n_tok += int(content.sum())
            for p, start, v in zip(points, starts, vals, strict=True):
                sl = slice(start, start + p.width)
                tok = v[content].double()  # (tokens, W)
                s1[sl] += tok.sum(0).numpy()
                s2[sl] += (tok * tok).sum(0).numpy()
                masked = v.masked_fill(~content[..., None], float("-inf"))
                smax[sl] += masked.amax(1).double().sum(0).numpy()
        mean = s1 / n_tok
        spread = np.sqrt(np.maximum(s2 / n_tok - mean * mean, 0.0))
        out = UnitValues(
            lang=lang, layers=layers, widths=[widths_by_layer[la] for la in layers],
            off_token=mean.astype(np.float32), off_max=(smax / len(background)).astype(np.float32),
            spread=np.maximum(spread, _EPS).astype(np.float32), n_background=len(background),
        )  # fmt: skip
        for concept, texts in positives.items():
            flat = np.unique(np.asarray(needed[concept], dtype=np.int64))
            if not len(texts):
                raise BabelscopeError(f"concept '{concept}' has no positive sentences in {lang}")
            tokens: list[np.ndarray] = []
            maxima: list[np.ndarray] = []
            for vals, content in _forward_batches(model, tokenizer, texts, points, batch_size):
                # Points in flat order, then the needed units: (B, T, needed).
                whole = torch.cat([vals[j] for j in np.argsort(starts)], dim=2)
                whole = whole[..., torch.from_numpy(flat)]
                tokens.append(whole[content].numpy())
                maxima.append(whole.masked_fill(~content[..., None], float("-inf")).amax(1).numpy())
            on_t = np.full(total, np.nan, dtype=np.float32)
            on_m = np.full(total, np.nan, dtype=np.float32)
            on_t[flat] = np.median(np.concatenate(tokens), axis=0)
            on_m[flat] = np.median(np.concatenate(maxima), axis=0)
            out.on_token[concept], out.on_max[concept] = on_t, on_m
            out.n_positive[concept] = len(texts)
    finally:
        model.train(was_training)
    return out
