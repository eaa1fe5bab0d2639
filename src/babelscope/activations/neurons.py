"""What a neuron is: unit kinds, their hook points, and small hooking primitives.

A *unit* is one channel of a tensor read at a hook point. The kinds (SPEC.md §2):

- ``mlp`` (default): the **input of the MLP down projection** of each block — the MLP's
  intermediate activation after the non-linearity (and after the gate, for gated MLPs).
  One rule for GPT-2, BLOOM, XGLM, OPT, GPT-NeoX, Llama, Gemma, Qwen, OLMo…
- ``mlp_pre``: the output of the MLP up projection, before the non-linearity (Suau's reading).
- ``residual``: the residual stream ``hidden_states[0..L]`` exactly as
  ``output_hidden_states=True`` returns it: layer 0 is the input of the first block
  (embedding output), layer i the output of block i-1, and layer L the base model's
  final output (after the final norm, as transformers returns it).
- ``linear_all``: the output of every linear layer inside the blocks (Suau's full set; the
  LM head and linear layers outside the blocks are not units).

Units are ``(layer, index)``; ``index`` runs over the concatenation of the layer's hook
points in the order :func:`hook_points` returns them. A model-wide flat index is
``unit_offsets(points)[k] + index`` where ``k`` is the layer's position in
``layers_of(points)`` — for all layers of a one-point-per-layer kind, ``k == layer``.

The value at a point always has the units on its last axis; the leading axes are
``(batch, seq)``, or ``batch * seq`` flattened where the model does so (OPT's MLP) —
``value.reshape(batch, seq, -1)`` restores them.

Hooking primitives in the spirit of baukit: :func:`hooked` calls a function on the values
at some points (and replaces them when it returns a tensor); :class:`Recorder` keeps the
latest value of each point. Both remove their hooks on exit, also on error.

**A hook that never runs is an error, not zeros.** Some models compute a projection
without calling its module (BLOOM with ``pretraining_tp > 1`` and ``slow_but_exact``:
``F.linear`` on weight slices), so a hook on it never runs: extraction would return zeros
and forcing would force nothing, silently. Every hook counts its calls
(:class:`HookCalls`); a point not called while the context was open raises a one-line
``BabelscopeError`` naming the module and the likely cause. Configurations known to do
this are refused up front by :func:`hook_points` (the family table's ``bypass``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch

from babelscope.activations.families import (
    GENERIC_BYPASS,
    FamilySpec,
    bypass_hint,
    check_not_bypassed,
    family_of,
    get_module,
    is_linear,
    out_features,
)
from babelscope.errors import BabelscopeError

UnitKind = Literal["mlp", "mlp_pre", "residual", "linear_all"]
UNIT_KINDS: tuple[str, ...] = get_args(UnitKind)


@dataclass
class HookPoint:
    """One place where units are read: a module, and whether its input or output.

    ``layer`` is the unit layer (for ``residual`` 0 is the embedding output), ``name`` the
    dotted module path from the top model, ``width`` the number of units it holds;
    ``hint`` says why its hook might never run (for the error when it does not).
    """

    layer: int
    name: str
    module: torch.nn.Module
    width: int
    reads: Literal["input", "output"]
    hint: str = GENERIC_BYPASS


def check_kind(kind: str) -> None:
    if kind not in UNIT_KINDS:
        raise BabelscopeError(f"unknown unit kind '{kind}': choose from {', '.join(UNIT_KINDS)}")


def hook_points(
    model: torch.nn.Module, kind: UnitKind = "mlp", layers: Sequence[int] | None = None
) -> list[HookPoint]:
    """The hook points of ``kind`` in ``model``, ordered by layer (then module order).

    ``layers`` keeps only those unit layers (residual layers run 0..L, the others 0..L-1).
    """
    check_kind(kind)
    spec = family_of(model)
    blocks = get_module(model, spec.layers)
    n = len(blocks)
    points: list[HookPoint] = []
    if kind in ("mlp", "mlp_pre"):
        sub = spec.down_proj if kind == "mlp" else spec.up_proj
        width = spec.intermediate_size(model.config)
        for i, block in enumerate(blocks):
            reads: Literal["input", "output"] = "input" if kind == "mlp" else "output"
            points.append(
                HookPoint(i, f"{spec.layers}.{i}.{sub}", get_module(block, sub), width, reads)
            )
    elif kind == "residual":
        hidden = spec.hidden_size(model.config)
        points.append(HookPoint(0, f"{spec.layers}.0", blocks[0], hidden, "input"))
        for i in range(1, n):
            points.append(HookPoint(i, f"{spec.layers}.{i - 1}", blocks[i - 1], hidden, "output"))
        points.append(
            HookPoint(
                n, spec.base, get_module(model, spec.base), _final_width(model, spec), "output"
            )
        )
    else:  # linear_all
        for i, block in enumerate(blocks):
            for name, mod in block.named_modules():
                if name and is_linear(mod):
                    points.append(
                        HookPoint(i, f"{spec.layers}.{i}.{name}", mod, out_features(mod), "output")
                    )
    if layers is not None:
        valid = sorted({p.layer for p in points})
        bad = [layer for layer in layers if layer not in valid]
        if bad:
            raise BabelscopeError(
                f"layer(s) {bad} do not exist for unit kind '{kind}': this model has layers {valid[0]}..{valid[-1]}"
            )
        wanted = set(layers)
        points = [p for p in points if p.layer in wanted]
    check_not_bypassed(model, spec, [p.name for p in points])
    hint = bypass_hint(model, spec)
    for p in points:
        p.hint = hint
    return points


def _final_width(model: torch.nn.Module, spec: FamilySpec) -> int:
    """Width of the base model's output (OPT may project it to another width)."""
    if spec.final_proj:
        proj = getattr(get_module(model, spec.base), spec.final_proj, None)
        if proj is not None:
            return out_features(proj)
    return spec.hidden_size(model.config)


def layers_of(points: Sequence[HookPoint]) -> list[int]:
    """The distinct unit layers of ``points``, in order."""
    return sorted({p.layer for p in points})


def layer_widths(points: Sequence[HookPoint]) -> dict[int, int]:
    """Units per layer (sum of the widths of the layer's points)."""
    widths: dict[int, int] = {}
    for p in points:
        widths[p.layer] = widths.get(p.layer, 0) + p.width
    return widths


def unit_offsets(points: Sequence[HookPoint]) -> np.ndarray:
    """Start of each layer in a model-wide flat unit index (length: layers + 1, last = total).

    Entry ``k`` belongs to ``layers_of(points)[k]``; flat index = ``offsets[k] + index``.
    """
    widths = layer_widths(points)
    return np.concatenate([[0], np.cumsum([widths[layer] for layer in layers_of(points)])]).astype(
        np.int64
    )


def flat_to_unit(
    points: Sequence[HookPoint], flat: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the flat index: ``(layer, index)`` arrays for flat unit indices."""
    offsets = unit_offsets(points)
    flat = np.asarray(flat, dtype=np.int64)
    if np.any(flat < 0) or np.any(flat >= offsets[-1]):
        raise BabelscopeError(f"flat unit index out of range 0..{offsets[-1] - 1}")
    k = np.searchsorted(offsets, flat, side="right") - 1
    return np.asarray(layers_of(points), dtype=np.int64)[k], flat - offsets[k]


# ---------------------------------------------------------------------------------------
# Hooking primitives
# ---------------------------------------------------------------------------------------

_INPUT_KWARGS = ("hidden_states", "input", "x")


def main_tensor(value: Any) -> torch.Tensor:
    """The tensor a module output (tensor, tuple, or ModelOutput) stands for: the first one."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if hasattr(value, "to_tuple"):  # transformers ModelOutput
        return value.to_tuple()[0]
    raise TypeError(f"no tensor in a module output of type {type(value).__name__}")


def _replace_output(value: Any, new: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return new
    if isinstance(value, tuple):
        return (new, *value[1:])
    if isinstance(value, list):
        return [new, *value[1:]]
    if hasattr(value, "to_tuple"):
        value[next(iter(value.keys()))] = new
        return value
    raise TypeError(f"cannot replace a module output of type {type(value).__name__}")


def _input_tensor(args: tuple, kwargs: dict) -> tuple[torch.Tensor, str | int]:
    """The main input tensor of a call and where it is (positional 0 or a keyword)."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0], 0
    for key in _INPUT_KWARGS:
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key], key
    for key, v in kwargs.items():
        if isinstance(v, torch.Tensor):
            return v, key
    raise TypeError("no tensor input in a module call")


HookFn = Callable[[HookPoint, torch.Tensor], "torch.Tensor | None"]


class HookCalls:
    """How often the hook of each point ran: ``counts[k]`` for ``points[k]``."""

    def __init__(self, points: Sequence[HookPoint]) -> None:
        self.points = list(points)
        self.counts = [0] * len(self.points)

    def missing(self) -> list[HookPoint]:
        """The points whose hook never ran."""
        return [p for p, n in zip(self.points, self.counts, strict=True) if n == 0]

    def check(self) -> None:
        """Raise (one line, naming the module and the likely cause) if a point never ran."""
        missing = self.missing()
        if missing:
            raise not_called_error(missing)


def not_called_error(missing: Sequence[HookPoint]) -> BabelscopeError:
    """The error for hook points that a forward pass never called."""
    first = missing[0]
    more = f" (and {len(missing) - 1} more hook point(s))" if len(missing) > 1 else ""
    return BabelscopeError(
        f"hook point {first.name} was never called during the forward pass{more}: {first.hint}"
    )


@contextlib.contextmanager
def hooked(points: Sequence[HookPoint], fn: HookFn, *, require: bool = True) -> Iterator[HookCalls]:
    """Call ``fn(point, value)`` on the value at every point during each forward pass.

    If ``fn`` returns a tensor it replaces the value (an edit: the model computes on with
    it); ``None`` leaves it unchanged (a read). Hooks are removed on exit, also on error —
    raising inside ``fn`` is a way to stop a forward pass early. Yields the
    :class:`HookCalls`; with ``require`` (the default) the block must run a forward pass
    that calls every point, and leaving it normally with a point never called raises.
    """
    handles = []
    calls = HookCalls(points)
    counts = calls.counts
    try:
        for k, p in enumerate(points):
            if p.reads == "input":

                def pre_hook(module, args, kwargs, _p=p, _k=k):
                    counts[_k] += 1
                    value, where = _input_tensor(args, kwargs)
                    new = fn(_p, value)
                    if new is None:
                        return None
                    if where == 0:
                        return (new, *args[1:]), kwargs
                    return args, {**kwargs, where: new}

                handles.append(p.module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            else:

                def fwd_hook(module, args, output, _p=p, _k=k):
                    counts[_k] += 1
                    new = fn(_p, main_tensor(output))
                    return None if new is None else _replace_output(output, new)

                handles.append(p.module.register_forward_hook(fwd_hook))
        yield calls
    finally:
        for h in handles:
            h.remove()
    if require:  # reached only when the block ended without an error
        calls.check()


class Recorder:
    """Keep the latest value at each point: ``with Recorder(points) as rec: model(...)``.

    ``rec.values[k]`` is the tensor at ``points[k]`` from the last forward pass (detached,
    on the model's device). ``rec.get(layer)`` concatenates a layer's points along the last
    axis (the unit order of :func:`hook_points`).
    """

    def __init__(self, points: Sequence[HookPoint]) -> None:
        self.points = list(points)
        self.values: dict[int, torch.Tensor] = {}
        self._index = {id(p): k for k, p in enumerate(self.points)}
        self._ctx: contextlib.AbstractContextManager | None = None

    def _record(self, point: HookPoint, value: torch.Tensor) -> None:
        self.values[self._index[id(point)]] = value.detach()

    def __enter__(self) -> Recorder:
        self._ctx = hooked(self.points, self._record)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)
        self._ctx = None

    def get(self, layer: int) -> torch.Tensor:
        parts = [self.values[k] for k, p in enumerate(self.points) if p.layer == layer]
        if not parts:
            raise KeyError(f"no recorded value for layer {layer}")
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


@contextlib.contextmanager
def edited(point: HookPoint, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the value at one point by ``fn(value)`` while the context is open."""
    with hooked([point], lambda _p, v: fn(v)):
        yield
