"""Storage dtypes of activations: half precision (float16, bfloat16) and how much it changes the results.

Pooled activations can be kept in ``float16`` or ``bfloat16`` instead of ``float32``
(half the disk and memory of the activation cache). ``bfloat16`` has float32's range
and 8 significant bits; ``float16`` has 11 bits but tops out at 65,504, so larger
magnitudes are saturated there (and counted). NumPy has no bfloat16: its bits are
stored as ``uint16`` (the upper half of the float32 word, rounded to nearest even by
torch) and widened back on read, which is exact.

:func:`compare_scores` is the measure used by the tests, ``docs/plan.md`` and
``benchmarks/gpu_precision.py``: maximum absolute and relative difference of AP and the
agreement of the top-K units.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from babelscope.errors import BabelscopeError

STORE_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
FLOAT16_MAX = 65504.0


def check_store_dtype(name: str) -> str:
    if name not in STORE_DTYPES:
        raise BabelscopeError(
            f"unknown storage dtype '{name}' for activations: choose {', '.join(STORE_DTYPES)}"
        )
    return name


def storage_dtype(name: str) -> np.dtype:
    """The NumPy dtype an array of ``name`` is stored as (bfloat16: its bits as uint16)."""
    check_store_dtype(name)
    return np.dtype({"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}[name])


def itemsize(name: str) -> int:
    """Bytes per stored value."""
    return storage_dtype(name).itemsize


def encode(x: torch.Tensor, name: str) -> np.ndarray:
    """A float tensor as a NumPy array in storage dtype ``name`` (converted on its device)."""
    if name == "float32":
        return x.to(torch.float32).cpu().numpy()
    if name == "float16":
        return x.to(torch.float32).clamp(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16).cpu().numpy()
    check_store_dtype(name)
    return x.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)


def encode_array(x: np.ndarray, name: str) -> np.ndarray:
    """:func:`encode` for a NumPy array."""
    return encode(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), name)


def decode(a: np.ndarray, name: str) -> np.ndarray:
    """Stored values back as float32 (a new array; exact for every storage dtype)."""
    if name == "bfloat16":
        return (np.asarray(a, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return (
        np.asarray(a, dtype=np.float32) if name == "float32" else np.asarray(a).astype(np.float32)
    )


def roundtrip(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as it reads back after storage in ``name`` (float32)."""
    return x if name == "float32" else decode(encode_array(x, name), name)


class Decoded(Mapping[int, np.ndarray]):
    """Per-layer stored arrays that read back as float32 on access (``raw``: as stored)."""

    def __init__(self, raw: Mapping[int, np.ndarray], name: str) -> None:
        self.raw = dict(raw)
        self.name = check_store_dtype(name)

    def __getitem__(self, layer: int) -> np.ndarray:
        return decode(self.raw[layer], self.name)

    def __iter__(self) -> Iterator[int]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def raw_arrays(arrays: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The arrays as stored: ``Decoded.raw``, or the float32 arrays themselves."""
    return dict(arrays.raw) if isinstance(arrays, Decoded) else dict(arrays)


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values (NaN last, ties by index)."""
    v = np.where(np.isnan(values), -np.inf, values.astype(np.float64))
    return np.lexsort((np.arange(len(v)), -v))[:k]


def compare_scores(ref: np.ndarray, other: np.ndarray, k: int) -> dict[str, Any]:
    """How far ``other`` is from ``ref``: two ``(concepts, units)`` AP arrays.

    ``max_abs``: the largest |AP difference|; ``max_rel``: the largest difference relative
    to the reference AP (units whose reference AP is at least 0.01); ``top_k_agreement``:
    the mean over concepts of the share of ``ref``'s top-``k`` units that are also in
    ``other``'s top ``k``; ``top_k_min``: its smallest value over concepts.
    """
    ref, other = np.atleast_2d(ref).astype(np.float64), np.atleast_2d(other).astype(np.float64)
    if ref.shape != other.shape:
        raise ValueError(f"compare_scores: shapes {ref.shape} and {other.shape} differ")
    diff = np.abs(ref - other)
    big = ref >= 0.01
    agree = [
        len(np.intersect1d(top_k(r, k), top_k(o, k))) / min(k, len(r))
        for r, o in zip(ref, other, strict=True)
    ]
    return {
        "max_abs": float(np.nanmax(diff)),
        "max_rel": float(np.nanmax(diff[big] / ref[big])) if big.any() else 0.0,
        "top_k_agreement": float(np.mean(agree)),
        "top_k_min": float(np.min(agree)),
        "k": int(k),
    }
