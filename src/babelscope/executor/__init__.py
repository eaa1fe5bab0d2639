"""Where a stage's per-checkpoint work runs: here, one after the other (serial), or as
Ray tasks on a cluster (``babelscope run --engine ray``). See :mod:`.base`."""

from babelscope.executor.base import (
    Executor,
    ExecutorSettings,
    SerialExecutor,
    StepDone,
    make_executor,
    report_steps,
    serial_or,
)

__all__ = [
    "Executor",
    "ExecutorSettings",
    "SerialExecutor",
    "StepDone",
    "make_executor",
    "report_steps",
    "serial_or",
]
