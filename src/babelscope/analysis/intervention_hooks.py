"""The hooks that force units: the counted handle of an attached intervention and the
per-module forcing hook (``x[..., units] = values``, or ``+=`` in mode ``add``).

Forcing cannot fail silently: the handle counts the model's forward passes and each hook's
calls, and leaving its ``with`` block after a pass in which a hook never ran (a model that
computes the projection without calling the module, see
:mod:`babelscope.activations.neurons`) raises a one-line error naming the module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class InterventionHandle:
    """The hooks of one attached intervention; ``remove()`` or leave the ``with`` block.

    With ``model`` given, its forward passes are counted (a pre-hook on the family's base
    model) along with each hook's calls: :meth:`check` raises when a pass ran and a hook
    did not, and leaving the ``with`` block normally checks.
    """

    def __init__(self, model: Any = None) -> None:
        from babelscope.activations.neurons import HookCalls

        self._handles: list[Any] = []
        self.calls = HookCalls([])
        self.passes = 0
        if model is not None:
            from babelscope.activations.families import family_of, get_module

            base = get_module(model, family_of(model).base)
            self._handles.append(base.register_forward_pre_hook(self._count_pass))

    def _count_pass(self, module: Any, args: Any) -> None:
        self.passes += 1

    def add(self, point: Any, hook: Any) -> None:
        """Register ``hook`` (with ``pre``/``post`` methods) where ``point`` reads its units."""
        k, counts = len(self.calls.points), self.calls.counts
        self.calls.points.append(point)
        counts.append(0)
        if point.reads == "input":

            def pre(module: Any, args: tuple, kwargs: dict) -> Any:
                counts[k] += 1
                return hook.pre(module, args, kwargs)

            self._handles.append(point.module.register_forward_pre_hook(pre, with_kwargs=True))
        else:

            def post(module: Any, args: tuple, output: Any) -> Any:
                counts[k] += 1
                return hook.post(module, args, output)

            self._handles.append(point.module.register_forward_hook(post))

    def check(self) -> None:
        """Raise (one line, naming the module) if the model ran and a hook never did."""
        if self.passes:
            self.calls.check()

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> InterventionHandle:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.remove()
        if exc_type is None:
            self.check()


class ForceHook:
    """``x[..., units] = values`` (or ``+= values`` with ``add``) on the module's input or
    output tensor."""

    def __init__(self, units: Sequence[int], values: Sequence[float], add: bool = False) -> None:
        import torch

        self.add = add
        self._idx_cpu = torch.tensor(list(units), dtype=torch.long)
        self._val_cpu = torch.tensor(list(values), dtype=torch.float32)
        self._cache: dict[tuple[Any, Any], tuple[Any, Any]] = {}

    def _force(self, x: Any) -> Any:
        import torch

        key = (x.device, x.dtype)
        if key not in self._cache:  # move the indices/values once per device and dtype
            self._cache[key] = (self._idx_cpu.to(x.device), self._val_cpu.to(x.device, x.dtype))
        idx, val = self._cache[key]
        # In place when nothing needs the old values (no autograd); otherwise on a copy.
        if torch.is_grad_enabled() and x.requires_grad:
            x = x.clone()
        if self.add:
            x[..., idx] += val
        else:
            x[..., idx] = val
        return x

    def pre(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if args:
            return (self._force(args[0]), *args[1:]), kwargs
        for name, v in kwargs.items():  # the input passed by keyword
            if hasattr(v, "shape"):
                return args, {**kwargs, name: self._force(v)}
        return None

    def post(self, module: Any, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (self._force(output[0]), *output[1:])
        if hasattr(output, "shape"):
            return self._force(output)
        if hasattr(output, "last_hidden_state"):
            output.last_hidden_state = self._force(output.last_hidden_state)
            return output
        raise TypeError(
            f"cannot force the output of {type(module).__name__}: {type(output).__name__}"
        )
