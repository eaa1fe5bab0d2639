"""Pre-training the embedded model series: tokenizer, XGLM, checkpoints (issue #3).

Public API::

    from babelscope.pretrain import load_pretrain_config, pretrain
    paths = pretrain(load_pretrain_config(None), Path("data/embedded"), Path("runs/demo/model"))
"""

from babelscope.pretrain.config import (
    DEFAULT_CONFIG,
    MICRO_CONFIG,
    PretrainConfig,
    load_pretrain_config,
    parse_pretrain_config,
)
from babelscope.pretrain.train import pretrain

__all__ = [
    "DEFAULT_CONFIG",
    "MICRO_CONFIG",
    "PretrainConfig",
    "load_pretrain_config",
    "parse_pretrain_config",
    "pretrain",
]
