"""babelscope: from language-specific to shared neurons over pre-training checkpoints.

Data flows one way: corpora -> checkpoints -> activations -> analysis
(probing, experts, alignment, steering) -> report.

Python API::

    import babelscope
    run = babelscope.run("examples/demo.toml")          # or a RunConfig, or None
    run = babelscope.run(None, stages=["probe", "report"])

One function per stage lives in :mod:`babelscope.pipeline` (``stage_probe`` …) over a
:class:`babelscope.pipeline.Run`; the library functions they call
(``run_probe``, ``run_experts``, ``run_alignment``, ``run_steering``) work on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from babelscope.pipeline import Run


def run(config: Any = None, *, stages: list[str] | None = None, force: bool = False) -> Run:
    """Run the study: ``config`` is a TOML path, a :class:`~babelscope.config.RunConfig`,
    or None for the embedded default. Returns the finished run (``run.dir`` holds it all)."""
    from babelscope.pipeline import run_study

    return run_study(config, stages=stages, force=force)
