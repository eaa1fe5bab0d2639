"""The Ray backend: each unit (one checkpoint) is a Ray task on a local or remote cluster.

Tasks ask for ``num_gpus`` (fractions share a GPU: Ray sets ``CUDA_VISIBLE_DEVICES``, so
``cuda`` in a task is its GPU) and ``num_cpus``; a task whose worker dies (a crash, the
OOM killer, a lost node) is retried ``max_retries`` times by Ray. Units write their
results atomically and skip what is already written, so a retry or a rerun redoes only
what is missing. The run directory must be on a filesystem every node sees.

Ray is an optional dependency (``pip install 'babelscope[ray]'``), imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from babelscope.errors import BabelscopeError
from babelscope.executor.base import Executor, step_of

T = TypeVar("T")
R = TypeVar("R")

INSTALL = "pip install 'babelscope[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the install command."""
    try:
        import ray
    except ImportError:
        raise BabelscopeError(
            f"--engine ray needs Ray, which is not installed: {INSTALL}"
        ) from None
    return ray


class RayExecutor(Executor):
    """Units as Ray tasks; joins the cluster at ``address`` (or the one already joined by
    this process, e.g. ``ray.init`` in a test), else starts a local one."""

    name = "ray"
    distributed = True

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float | None = None,
        max_retries: int = 3,
        device: str = "auto",
    ) -> None:
        ray = self._ray = import_ray()
        self._owned = not ray.is_initialized()
        if self._owned:
            # No address: RAY_ADDRESS if set (Ray's convention), else a fresh local cluster,
            # never a stale one left by an earlier `ray start` on this machine.
            address = address or os.environ.get("RAY_ADDRESS") or None
            try:
                ray.init(address=address or "local", include_dashboard=False, logging_level="error")
            except ConnectionError as e:
                first = (str(e).splitlines() or ["no cluster"])[0].rstrip(".")
                raise BabelscopeError(
                    f"cannot join the Ray cluster at {address}: {first}; start one with "
                    "`ray start --head`, or leave out --address to start a local one"
                ) from None
        self.max_retries = int(max_retries)
        self.num_cpus = float(num_cpus)
        self.num_gpus = self._check_resources(num_gpus, self.num_cpus, device)

    def _check_resources(self, num_gpus: float | None, num_cpus: float, device: str) -> float:
        """The GPUs per task; a request no node can meet (Ray would wait for ever) is an
        error here, as is ``cuda`` without a GPU (Ray hides GPUs from such tasks)."""
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        gpus = max((float(r.get("GPU", 0)) for r in nodes), default=0.0)
        cpus = max((float(r.get("CPU", 0)) for r in nodes), default=0.0)
        if num_gpus is None:
            num_gpus = 1.0 if gpus >= 1 and device != "cpu" else 0.0
        if num_gpus > 1 and not float(num_gpus).is_integer():
            raise BabelscopeError(
                f"run.num_gpus = {num_gpus}: Ray takes a fraction of one GPU or whole GPUs; "
                "use e.g. 0.5, 1 or 2"
            )
        if num_gpus > gpus:
            raise BabelscopeError(
                f"run.num_gpus = {num_gpus} per task, but no node of the Ray cluster has that "
                f"many GPUs (most: {gpus:g}): lower run.num_gpus, or add GPUs to the cluster"
            )
        if num_cpus > cpus:
            raise BabelscopeError(
                f"run.num_cpus = {num_cpus:g} per task, but no node of the Ray cluster has that "
                f"many CPUs (most: {cpus:g}): lower run.num_cpus"
            )
        if device == "cuda" and num_gpus == 0:
            raise BabelscopeError(
                "model.device = cuda with --engine ray needs GPUs per task: set run.num_gpus "
                "(e.g. 1, or 0.5 to share a GPU), or device = auto"
            )
        return float(num_gpus)

    def map(
        self, fn: Callable[[T, Any], R], items: Sequence[T], shared: Any = None, *, desc: str
    ) -> list[R]:
        from babelscope.progress import track

        ray = self._ray
        items = list(items)
        if not items:
            return []
        # ``shared`` goes to the object store once; a top-level ref argument reaches the
        # task as its value.
        ref = ray.put(shared)
        task = ray.remote(fn).options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,  # an exception is a result (the same on a retry)
        )
        refs = [task.remote(item, ref) for item in items]
        index = {r: i for i, r in enumerate(refs)}
        out: list[Any] = [None] * len(items)
        pending, failed = list(refs), None
        try:
            for _ in track(range(len(refs)), f"{desc} (ray: {self._shape()})"):
                done, pending = ray.wait(pending, num_returns=1)
                i = index[done[0]]
                try:
                    out[i] = self._get(done[0], items[i], desc)
                except Exception as e:  # noqa: BLE001 - raised below, once the rest is done
                    # The other checkpoints go on: what they write is kept for the rerun.
                    failed = failed or e
        except BaseException:
            # Ctrl-C: stop the rest. What finished is written and kept.
            for r in pending:
                ray.cancel(r, force=True)
            raise
        if failed is not None:
            raise failed
        return out

    def _shape(self) -> str:
        return f"{self.num_gpus:g} GPU, {self.num_cpus:g} CPU per task"

    def _get(self, ref: Any, item: Any, desc: str) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BabelscopeError):
                raise cause from None  # the user's error, one line, as in the serial engine
            raise
        except ray.exceptions.RayError as e:  # the worker or its node died, retries spent
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise BabelscopeError(
                f"{desc}: the task for {step_of(item)} failed on the Ray cluster after "
                f"{self.max_retries} retries ({type(e).__name__}: {first}); finished steps "
                "are kept: run the same command again to resume (raise run.max_retries, or "
                "give tasks more memory with fewer per node)"
            ) from None

    def close(self) -> None:
        """Leave the cluster if this executor joined it (a local one then stops)."""
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False
