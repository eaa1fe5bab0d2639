"""Forced generation and its baselines (experiment 3 of the study), as a dose-response.

- :mod:`.sampling`: seeded sampling (one seed, one text; KV cache) and fluency;
- :mod:`.settings`: ``SteerSettings`` and the conditions;
- :mod:`.concepts`: which concepts to steer, and the sentences values are measured on;
- :mod:`.values`: token-level forcing values measured on each checkpoint;
- :mod:`.conditions`: the experts and the fair baselines as interventions;
- :mod:`.stage`: the stage driver writing ``results/steering.parquet``;
- :mod:`.summary`: the dose-response table with Wilson intervals and paired tests.
"""

from babelscope.analysis.steering.concepts import choose_concepts
from babelscope.analysis.steering.sampling import (
    check_context,
    generate_texts,
    sample_next,
    sample_tokens,
    start_ids,
    token_losses,
)
from babelscope.analysis.steering.settings import (
    BASELINES,
    CONDITION_LABELS,
    CONDITIONS,
    EMBEDDED_DEFAULTS,
    RESULT_FILE,
    STATISTICS,
    SteerSettings,
)
from babelscope.analysis.steering.stage import (
    COLUMNS,
    judge_outputs,
    run_steering,
    spread,
    steer_checkpoint,
)
from babelscope.analysis.steering.summary import (
    dose_response,
    dose_table,
    markdown,
    paired_tests,
    summarize,
)

__all__ = [
    "BASELINES", "COLUMNS", "CONDITIONS", "CONDITION_LABELS", "EMBEDDED_DEFAULTS", "RESULT_FILE",
    "STATISTICS", "SteerSettings", "check_context", "choose_concepts", "dose_response",
    "dose_table", "generate_texts", "judge_outputs", "markdown", "paired_tests", "run_steering",
    "sample_next", "sample_tokens", "spread", "start_ids", "steer_checkpoint", "summarize",
    "token_losses",
]  # fmt: skip
