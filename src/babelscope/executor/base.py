"""The executor interface, the ``[run]`` settings, and the serial backend.

A stage splits its work into units, one per checkpoint: a top-level (so picklable)
function ``fn(item, shared)`` that loads the checkpoint, computes, writes that step's
results atomically under the run directory and returns their path (or a small record).
The stage's merge (its Parquet table, provenance, figures) runs afterwards in the driver,
from what the units wrote. Per-step results are keyed by what produced them, so a unit
that runs twice (a retried task, a rerun after a crash) redoes only what is missing.

Backends: :class:`SerialExecutor` (the default; one unit after the other, in this
process) and :class:`babelscope.executor.ray_backend.RayExecutor` (units as Ray tasks on
a cluster). Importing this module never imports Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from babelscope.errors import BabelscopeError

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("serial", "ray")


class ExecutorSettings(BaseModel):
    """How the per-checkpoint work runs: the ``[run]`` section of the config (and
    ``babelscope run --engine/--address``). None of it changes a result."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["serial", "ray"] = Field(
        "serial", description="serial: one checkpoint after the other here; ray: Ray tasks"
    )
    address: str | None = Field(
        None,
        description="Ray cluster to join ('auto': the one started on this node with "
        "`ray start`); None: start a local one",
    )
    num_gpus: float | None = Field(
        None,
        ge=0,
        description="GPUs per checkpoint task (fractions share a GPU); None: 1 when the "
        "cluster has GPUs and model.device is not cpu, else 0",
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs per checkpoint task")
    max_retries: int = Field(
        3, ge=0, description="Retries of a task whose worker died (crash, OOM kill, lost node)"
    )


class Executor(ABC):
    """Runs a stage's units; results come back in the order of the items."""

    name: str = "?"
    #: True when units run in other processes (the device is then resolved there).
    distributed: bool = False

    @abstractmethod
    def map(
        self, fn: Callable[[T, Any], R], items: Sequence[T], shared: Any = None, *, desc: str
    ) -> list[R]:
        """``[fn(item, shared) for item in items]``, with a progress bar named ``desc``.

        ``fn`` must be a module-level function and ``item``/``shared`` picklable: a
        distributed backend sends them to its workers (``shared`` once, not per item).
        A :class:`BabelscopeError` raised by a unit is raised here as it is.
        """

    def close(self) -> None:
        """Release what the backend holds (nothing for the serial one)."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SerialExecutor(Executor):
    """One unit after the other, in this process: the default, and what tests use."""

    name = "serial"

    def map(
        self, fn: Callable[[T, Any], R], items: Sequence[T], shared: Any = None, *, desc: str
    ) -> list[R]:
        from babelscope.progress import track

        return [fn(item, shared) for item in track(list(items), desc)]


def serial_or(executor: Executor | None) -> Executor:
    """``executor``, or the serial one when None (the stages' default)."""
    return executor if executor is not None else SerialExecutor()


def make_executor(settings: ExecutorSettings | None = None, *, device: str = "auto") -> Executor:
    """The backend ``settings.engine`` names; ``device`` is ``model.device`` (a Ray task
    gets a GPU only when the device can use one)."""
    settings = settings or ExecutorSettings()
    if settings.engine == "serial":
        if settings.address is not None:
            raise BabelscopeError(
                "run.address (--address) names a Ray cluster but the engine is serial: "
                "add --engine ray, or leave out the address"
            )
        return SerialExecutor()
    if settings.engine == "ray":
        from babelscope.executor.ray_backend import RayExecutor

        return RayExecutor(
            address=settings.address,
            num_cpus=settings.num_cpus,
            num_gpus=settings.num_gpus,
            max_retries=settings.max_retries,
            device=device,
        )
    raise BabelscopeError(f"unknown engine '{settings.engine}': choose {' or '.join(ENGINES)}")


def step_of(item: Any) -> str:
    """How a unit is named in messages: ``step N`` for a checkpoint, else the item."""
    step = getattr(item, "step", None)
    return f"step {step}" if step is not None else str(item)


class StepDone(NamedTuple):
    """What a unit returns: where its results are, how long it took (None: they were
    already there, from an earlier run or attempt), and the weights' fingerprint when the
    results do not hold it themselves."""

    path: Path
    seconds: float | None = None
    fingerprint: str | None = None


def report_steps(stage: str, items: Sequence[Any], done: Sequence[StepDone]) -> None:
    """One line for the steps whose results were reused, one for the time per checkpoint."""
    from babelscope.progress import info

    reused = [step_of(i).removeprefix("step ") for i, d in zip(items, done, strict=True)
              if d.seconds is None]  # fmt: skip
    times = [d.seconds for d in done if d.seconds is not None]
    if reused:
        info(f"{stage}: reused finished results for step(s) {', '.join(reused)}")
    if times:
        info(f"{stage}: {sum(times) / len(times):.1f} s per checkpoint")
