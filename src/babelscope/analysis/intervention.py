"""The forcing hook: overwrite chosen units with fixed values (or shift them) while the model runs.

An :class:`Intervention` is a small, saveable object in the style of apple/ml-aura:
a list of ``(layer, unit, value)`` for one unit kind (see
:func:`babelscope.activations.neurons.hook_points`), a ``mode`` and where it came from
(step, concept, source language, statistic). In mode ``set`` a unit is overwritten with
its value; in mode ``add`` the value is added to what the unit computes (a shift by
on - off keeps the unit's own variation). :meth:`Intervention.attach` registers one hook
per touched layer; the hook changes the units at *every* position of whatever the
module sees. With the KV cache on, the forward passes after the prompt see only the
newest token, so the prompt and every generated token are forced alike.

The hooks themselves (and the check that each of them ran) are in
:mod:`babelscope.analysis.intervention_hooks`.

Build one from expert scores (:meth:`Intervention.from_experts`), as the random-units
baseline (:meth:`Intervention.random_units`), or by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.intervention_hooks import ForceHook, InterventionHandle
from babelscope.errors import BabelscopeError

FORMAT = "babelscope.intervention/1"
STATISTICS = ("on_p50", "on_p90", "zero")
MODES = ("set", "add")


def parse_statistic(statistic: str | float) -> str | float:
    """Validate a forcing statistic: ``on_p50``, ``on_p90``, ``zero`` or a number."""
    if isinstance(statistic, bool):  # bool is an int: reject it explicitly
        raise BabelscopeError(
            f"unknown forcing statistic {statistic!r}: use on_p50, on_p90, zero or a number"
        )
    if isinstance(statistic, int | float):
        value = float(statistic)
    else:
        s = str(statistic).strip().lower()
        if s in STATISTICS:
            return s
        try:
            value = float(s)
        except ValueError:
            raise BabelscopeError(
                f"unknown forcing statistic '{statistic}': use on_p50, on_p90, zero or a number"
            ) from None
    if not math.isfinite(value):
        raise BabelscopeError(f"forcing value {statistic!r} is not finite: give a finite number")
    return value


def statistic_values(scores: Any, flat: np.ndarray, statistic: str | float) -> np.ndarray:
    """The forcing value of each flat unit index under ``statistic`` (float32)."""
    stat = parse_statistic(statistic)
    if stat == "zero":
        return np.zeros(len(flat), dtype=np.float32)
    if isinstance(stat, float):
        return np.full(len(flat), stat, dtype=np.float32)
    return np.asarray(getattr(scores, stat), dtype=np.float32)[flat]


def _check_k(k: int, total: int) -> int:
    k = int(k)
    if k < 1:
        raise BabelscopeError(f"K = {k} experts: choose K of at least 1")
    if k > total:
        raise BabelscopeError(
            f"K = {k} is larger than the {total} units of the model: choose K <= {total}"
        )
    return k


@dataclass
class Intervention:
    """Units forced to fixed values, with their provenance.

    ``units`` holds ``(layer, unit, value)``; ``layer`` is the hook point's layer
    number as given by ``neurons.hook_points(model, kind)``.
    """

    units: list[tuple[int, int, float]]
    kind: str = "mlp"
    step: int | None = None
    concept: str | None = None
    source_lang: str | None = None
    statistic: str | None = None
    condition: str = "custom"
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    mode: str = "set"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BabelscopeError(f"unknown forcing mode '{self.mode}': use set or add")
        self.units = [(int(la), int(u), float(v)) for la, u, v in self.units]
        if not self.units:
            raise BabelscopeError("an intervention needs at least one unit: K must be at least 1")
        bad = [(la, u) for la, u, v in self.units if la < 0 or u < 0 or not math.isfinite(v)]
        if bad:
            raise BabelscopeError(
                f"bad forced unit(s) {bad[:3]}: layers and units are >= 0, values finite"
            )

    # -- description ---------------------------------------------------------------

    @property
    def k(self) -> int:
        """Number of forced units."""
        return len(self.units)

    def by_layer(self) -> dict[int, tuple[list[int], list[float]]]:
        """``layer -> (unit indices, values)``; a unit listed twice keeps its last value."""
        out: dict[int, dict[int, float]] = {}
        for la, u, v in self.units:
            out.setdefault(la, {})[u] = v
        return {la: (list(d), list(d.values())) for la, d in sorted(out.items())}

    def provenance(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step,
            "concept": self.concept,
            "source_lang": self.source_lang,
            "statistic": self.statistic,
            "condition": self.condition,
            "seed": self.seed,
            "mode": self.mode,
            "k": self.k,
            "meta": self.meta,
        }

    # -- factories -----------------------------------------------------------------

    @classmethod
    def from_experts(
        cls,
        scores: Any,
        k: int,
        statistic: str | float = "on_p50",
        *,
        layer: int | None = None,
        kind: str = "mlp",
    ) -> Intervention:
        """The top-``k`` experts (highest AP) of ``scores`` forced to ``statistic``.

        ``scores`` is a ``UnitScores`` (``babelscope.analysis.experts``): it supplies
        ``top(k, layer)``, ``flat(layer, unit)`` and the per-unit statistics.
        """
        stat = parse_statistic(statistic)
        total = len(scores.ap) if layer is None else _layer_width(scores, layer)
        k = _check_k(k, total)
        top = list(scores.top(k, layer=layer))
        flat = np.array([scores.flat(la, u) for la, u in top], dtype=np.int64)
        values = statistic_values(scores, flat, stat)
        return cls(
            units=[(la, u, float(v)) for (la, u), v in zip(top, values, strict=True)],
            kind=kind,
            step=_maybe_int(getattr(scores, "step", None)),
            concept=getattr(scores, "concept", None),
            source_lang=getattr(scores, "lang", None),
            statistic=str(stat),
            condition="experts",
            meta={"layer": layer},
        )

    @classmethod
    def random_units(
        cls,
        model_or_points: Any,
        k: int,
        *,
        values_like: Any | None = None,
        statistic: str | float = "on_p50",
        seed: int = 0,
        exclude: Iterable[tuple[int, int]] = (),
        kind: str = "mlp",
    ) -> Intervention:
        """``k`` units drawn uniformly over the model (minus ``exclude``), forced to
        their own ``statistic`` in ``values_like`` (a ``UnitScores``) — the random-units
        baseline. Without ``values_like`` the statistic must be ``zero`` or a number.

        ``model_or_points`` is a model (its ``kind`` hook points are used), a list of
        hook points, or a ``UnitScores`` (its layers and widths).
        """
        stat = parse_statistic(statistic)
        if values_like is None and isinstance(stat, str) and stat != "zero":
            raise BabelscopeError(
                f"random units forced to '{stat}' need unit scores (values_like): pass them, or a number"
            )
        layers, widths = _layers_widths(model_or_points, kind)
        if values_like is not None and (list(values_like.layers), list(values_like.widths)) != (
            layers,
            widths,
        ):
            raise BabelscopeError(
                "the unit scores do not match the model's units (layers or widths differ): "
                "compute experts for this checkpoint and unit kind first"
            )
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        total = int(offsets[-1])
        layer_pos = {la: i for i, la in enumerate(layers)}
        excluded = np.array(
            [offsets[layer_pos[la]] + u for la, u in exclude if la in layer_pos], dtype=np.int64
        )
        pool = np.setdiff1d(np.arange(total, dtype=np.int64), excluded)
        k = _check_k(k, len(pool))
        rng = np.random.default_rng(seed)
        flat = np.sort(rng.choice(pool, size=k, replace=False))
        pos = np.searchsorted(offsets, flat, side="right") - 1
        values = statistic_values(values_like, flat, stat)
        units = [
            (layers[p], int(f - offsets[p]), float(v))
            for p, f, v in zip(pos, flat, values, strict=True)
        ]
        return cls(
            units=units,
            kind=kind,
            step=_maybe_int(getattr(values_like, "step", None)),
            concept=getattr(values_like, "concept", None),
            source_lang=getattr(values_like, "lang", None),
            statistic=str(stat),
            condition="random",
            seed=seed,
        )

    # -- hooking -------------------------------------------------------------------

    def placements(self, model: Any) -> list[tuple[Any, list[int], list[float]]]:
        """``(hook point, units within it, values)`` for every hook point this touches.

        A layer may hold several hook points (``linear_all``): its unit index runs over
        their concatenation, in hook_points order. Errors if made for another model.
        """
        from babelscope.activations.neurons import hook_points

        points: dict[int, list[Any]] = {}
        for hp in hook_points(model, kind=self.kind):
            points.setdefault(hp.layer, []).append(hp)
        out = []
        for la, (units, values) in self.by_layer().items():
            if la not in points:
                raise BabelscopeError(
                    f"the intervention forces layer {la} but the model has {self.kind} layers "
                    f"{min(points)}..{max(points)}: it was made for another model"
                )
            width = sum(hp.width for hp in points[la])
            if max(units) >= width:
                raise BabelscopeError(
                    f"the intervention forces unit {max(units)} of layer {la}, which has "
                    f"{width} units: it was made for another model"
                )
            start = 0
            for hp in points[la]:
                mine = [(u - start, v) for u, v in zip(units, values, strict=True)
                        if start <= u < start + hp.width]  # fmt: skip
                start += hp.width
                if mine:
                    out.append((hp, [u for u, _ in mine], [v for _, v in mine]))
        return out

    def attach(self, model: Any) -> InterventionHandle:
        """Register the forcing hooks on ``model``; returns a handle (also a context
        manager) whose ``remove()`` takes them off and leaves the model as it was."""
        placed = self.placements(model)
        handle = InterventionHandle(model)
        try:
            for hp, units, values in placed:
                handle.add(hp, ForceHook(units, values, add=self.mode == "add"))
        except BaseException:
            handle.remove()
            raise
        return handle

    # -- files ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        layers, units, values = (list(x) for x in zip(*self.units, strict=True))
        return {
            "format": FORMAT,
            **self.provenance(),
            "layers": layers,
            "units": units,
            "values": values,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intervention:
        if d.get("format") != FORMAT:
            raise BabelscopeError(
                f"not a babelscope intervention (format {d.get('format')!r}): expected {FORMAT}"
            )
        return cls(
            units=list(zip(d["layers"], d["units"], d["values"], strict=True)),
            kind=d.get("kind", "mlp"),
            step=d.get("step"),
            concept=d.get("concept"),
            source_lang=d.get("source_lang"),
            statistic=d.get("statistic"),
            condition=d.get("condition", "custom"),
            seed=d.get("seed"),
            meta=d.get("meta") or {},
            mode=d.get("mode", "set"),
        )

    def save(self, path: str | Path) -> Path:
        """Write to ``.json`` (readable; float32 values round-trip exactly) or
        ``.safetensors`` (tensors + provenance as metadata)."""
        from babelscope.io import atomic_path, stable_json, write_json_atomic

        path = Path(path)
        if path.suffix == ".safetensors":
            import torch
            from safetensors.torch import save_file

            d = self.to_dict()
            tensors = {
                "layers": torch.tensor(d.pop("layers"), dtype=torch.int64),
                "units": torch.tensor(d.pop("units"), dtype=torch.int64),
                "values": torch.tensor(d.pop("values"), dtype=torch.float32),
            }
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp), metadata={"babelscope": stable_json(d)})
            return path
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Intervention:
        """Read an intervention written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise BabelscopeError(f"no intervention file at {path}: check the path")
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("babelscope", "{}"))
                for name in ("layers", "units", "values"):
                    meta[name] = f.get_tensor(name).tolist()
            return cls.from_dict(meta)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise BabelscopeError(f"cannot read intervention {path}: {e}") from None


def _layers_widths(obj: Any, kind: str) -> tuple[list[int], list[int]]:
    """Unit layers and their widths (a layer's hook points summed, as in UnitScores)."""
    if hasattr(obj, "widths") and hasattr(obj, "layers"):  # UnitScores
        return [int(x) for x in obj.layers], [int(x) for x in obj.widths]
    if hasattr(obj, "named_modules"):  # a model
        from babelscope.activations.neurons import hook_points

        obj = hook_points(obj, kind=kind)
    widths: dict[int, int] = {}
    for p in obj:
        widths[int(p.layer)] = widths.get(int(p.layer), 0) + int(p.width)
    layers = sorted(widths)
    return layers, [widths[la] for la in layers]


def _layer_width(scores: Any, layer: int) -> int:
    layers = list(scores.layers)
    if layer not in layers:
        raise BabelscopeError(
            f"no layer {layer} in the expert scores: choose one of {layers[0]}..{layers[-1]}"
        )
    return int(scores.widths[layers.index(layer)])


def _maybe_int(x: Any) -> int | None:
    return None if x is None else int(x)
