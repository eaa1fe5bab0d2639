"""Many interventions in one batch: each row's text is what its intervention gives alone."""

from __future__ import annotations

import pytest

from babelscope.activations.neurons import hook_points
from babelscope.analysis.intervention import Intervention
from babelscope.analysis.steering import sample_tokens, start_ids
from babelscope.analysis.steering.batch import RowInterventions


@pytest.fixture(scope="module", params=["gpt2", "xglm"])
def tiny(request, tmp_path_factory):
    from helpers import make_tiny_model

    model, tok = make_tiny_model(tmp_path_factory.mktemp(request.param), family=request.param)
    return model.eval(), tok


def test_rows_match_their_intervention_alone(tiny):
    model, tok = tiny
    width = hook_points(model, "mlp")[0].width
    ivs = [
        None,
        Intervention([(0, u, 3.0) for u in range(0, width, 4)], mode="set"),
        Intervention([(1, u, 2.5) for u in range(1, width, 3)] + [(0, 2, -1.0)], mode="add"),
        Intervention(
            [(0, u, 3.0) for u in range(0, width, 4)], mode="add"
        ),  # same units, other mode
    ]
    p, kw = start_ids(tok), dict(max_new_tokens=10, eos_token_id=None)
    alone = []
    for iv in ivs:
        if iv is None:
            alone.append(sample_tokens(model, p, range(3), **kw))
        else:
            with iv.attach(model):
                alone.append(sample_tokens(model, p, range(3), **kw))
    groups = [g for g in range(len(ivs)) for _ in range(3)]
    seeds = [s for _ in ivs for s in range(3)]
    with RowInterventions(ivs).attach(model, groups):
        mixed = sample_tokens(model, p, seeds, **kw)
    assert mixed == [row for rows in alone for row in rows]
    assert len({tuple(r[0]) for r in alone}) == len(ivs)  # the interventions do differ
    # Hooks are gone afterwards.
    assert sample_tokens(model, p, range(3), **kw) == alone[0]


def test_batch_of_the_wrong_size_is_refused(tiny):
    model, tok = tiny
    iv = Intervention([(0, 1, 1.0)], mode="add")
    with RowInterventions([iv]).attach(model, [0, 0]), pytest.raises(RuntimeError, match="planned"):
        sample_tokens(model, start_ids(tok), range(3), max_new_tokens=2)


def test_batched_forcing_of_a_bypassed_module_is_an_error(monkeypatch):
    from transformers.models.xglm.modeling_xglm import XGLMDecoderLayer

    from babelscope.errors import BabelscopeError
    from helpers_models import bypass, tiny_family_model

    model = tiny_family_model("xglm")
    forced = Intervention([(0, 1, 9.0)], kind="mlp")
    with RowInterventions([forced, None]).attach(model, [0, 1]) as h:
        sample_tokens(model, [0, 5], [1, 2], max_new_tokens=3)
    assert h.passes == 3 and h.calls.counts == [3]  # one call per decoding step
    bypass(monkeypatch, XGLMDecoderLayer, "fc2")
    rows = RowInterventions([forced, None])
    with pytest.raises(BabelscopeError, match=r"model\.layers\.0\.fc2 was never called"), \
            rows.attach(model, [0, 1]):  # fmt: skip
        sample_tokens(model, [0, 5], [1, 2], max_new_tokens=3)
