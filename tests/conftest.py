import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("BABELSCOPE_QUIET", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    # Two pytest workers share two cores.
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_series_dir(tmp_path_factory):
    """A local series of three tiny random XGLM checkpoints: step-0, step-1, step-2."""
    from helpers import make_tiny_series

    return make_tiny_series(tmp_path_factory.mktemp("series"))
