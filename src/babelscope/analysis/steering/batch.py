"""Many interventions in one batch: each row of a generation runs under its own.

A dose-response needs many short runs (conditions x K x random draws), each the same
prompt with another set of forced units. Run one at a time, the fixed cost of every
decoding step is paid again per run; run together, one batch serves them all. Because
each row samples with its own seeded generator and rows never interact (one prompt, no
padding), a row's text is the same as when its intervention runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from babelscope.analysis.intervention import Intervention
from babelscope.analysis.intervention_hooks import ForceHook, InterventionHandle


class _RowHook(ForceHook):  # ForceHook's pre/post, with a forcing per row
    """Per row ``r``: ``x[r, :, u] = set[r, u]`` where set, else ``x[r, :, u] + add[r, u]``."""

    def __init__(
        self, units: torch.Tensor, add: torch.Tensor, mask: torch.Tensor, val: torch.Tensor
    ):
        self.units, self.add, self.mask, self.val = units, add, mask, val
        self._dev: dict[tuple[Any, Any], tuple[torch.Tensor, ...]] = {}

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.add.shape[0]:
            raise RuntimeError(f"batch of {x.shape[0]} rows, but {self.add.shape[0]} were planned")
        key = (x.device, x.dtype)
        if key not in self._dev:
            self._dev[key] = (
                self.units.to(x.device), self.add.to(x.device, x.dtype),
                self.mask.to(x.device), self.val.to(x.device, x.dtype),
            )  # fmt: skip
        units, add, mask, val = self._dev[key]
        if torch.is_grad_enabled() and x.requires_grad:
            x = x.clone()
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (len(units),)
        cur = x[..., units]
        x[..., units] = torch.where(mask.view(shape), val.view(shape), cur + add.view(shape))
        return x


class RowInterventions:
    """``interventions[g]`` (None: no forcing) for the rows whose group is ``g``."""

    def __init__(self, interventions: Sequence[Intervention | None]) -> None:
        self.interventions = list(interventions)

    def attach(self, model: Any, groups: Sequence[int]) -> InterventionHandle:
        """Hook ``model`` for one batch whose row ``i`` runs under ``interventions[groups[i]]``."""
        # (module, reads) -> (hook point, {group: (units, values, add?)})
        by_point: dict[
            tuple[int, str], tuple[Any, dict[int, tuple[list[int], list[float], bool]]]
        ] = {}
        for g, iv in enumerate(self.interventions):
            if iv is None:
                continue
            for hp, units, values in iv.placements(model):
                key = (id(hp.module), hp.reads)
                by_point.setdefault(key, (hp, {}))[1][g] = (units, values, iv.mode == "add")
        rows = torch.as_tensor(list(groups), dtype=torch.long)
        handle = InterventionHandle(model)  # counts passes and calls: no silent non-forcing
        try:
            for hp, per_group in by_point.values():
                touched = sorted({u for units, _, _ in per_group.values() for u in units})
                col = {u: j for j, u in enumerate(touched)}
                n = len(self.interventions)
                add = torch.zeros((n, len(touched)), dtype=torch.float32)
                val = torch.zeros((n, len(touched)), dtype=torch.float32)
                mask = torch.zeros((n, len(touched)), dtype=torch.bool)
                for g, (units, values, additive) in per_group.items():
                    j = torch.as_tensor([col[u] for u in units], dtype=torch.long)
                    v = torch.as_tensor(values, dtype=torch.float32)
                    if additive:
                        add[g, j] = v
                    else:
                        val[g, j], mask[g, j] = v, True
                hook = _RowHook(
                    torch.as_tensor(touched, dtype=torch.long), add[rows], mask[rows], val[rows]
                )
                handle.add(hp, hook)
        except BaseException:
            handle.remove()
            raise
        return handle
