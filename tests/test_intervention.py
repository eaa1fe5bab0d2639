"""The forcing hook: every position forced, clean removal, save/load, factories, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from babelscope.activations.neurons import hook_points
from babelscope.analysis.experts import UnitScores
from babelscope.analysis.intervention import Intervention, parse_statistic
from babelscope.analysis.steering import sample_tokens
from babelscope.errors import BabelscopeError


@pytest.fixture(scope="module", params=["gpt2", "xglm"])
def tiny(request, tmp_path_factory):
    from helpers import make_tiny_model

    model, tok = make_tiny_model(tmp_path_factory.mktemp(request.param), family=request.param)
    return model.eval(), tok


def fake_scores(model) -> UnitScores:
    points = hook_points(model, "mlp")
    n = sum(p.width for p in points)
    rng = np.random.default_rng(0)
    return UnitScores(
        step=7,
        concept="water",
        lang="spa",
        layers=[p.layer for p in points],
        widths=[p.width for p in points],
        ap=rng.random(n),
        on_p50=rng.normal(2.0, 0.5, n).astype(np.float32),
        on_p90=rng.normal(4.0, 0.5, n).astype(np.float32),
        off_mean=rng.normal(0.0, 0.1, n).astype(np.float32),
    )


def test_forced_units_hold_value_at_every_step(tiny):
    model, tok = tiny
    points = hook_points(model, "mlp")
    forced = Intervention([(0, 3, 5.0), (0, 7, -2.5), (1, 0, 1.25)])
    seen: list[tuple[int, torch.Tensor]] = []

    def record(module, args, output, _layer):
        seen.append((_layer, args[0].detach().clone()))

    with forced.attach(model):
        # Registered after the forcing hook: sees the down-projection input as used.
        rec = [
            p.module.register_forward_hook(lambda m, a, o, _l=p.layer: record(m, a, o, _l))
            for p in points
        ]
        try:
            sample_tokens(model, [2], [0, 1, 2], max_new_tokens=6, eos_token_id=None)
        finally:
            for h in rec:
                h.remove()
    # One forward per new token and layer; with the cache, later calls see one position.
    assert len(seen) == 6 * len(points)
    assert seen[0][1].shape[1] == 1 and seen[-1][1].shape[1] == 1
    for layer, x in seen:
        for la, u, v in forced.units:
            if la == layer:
                assert torch.all(x[..., u] == v)
        free = [
            i
            for i in range(x.shape[-1])
            if (layer, i) not in {(la, u) for la, u, _ in forced.units}
        ]
        assert not torch.all(x[..., free] == 0)  # the rest still computed


def test_every_prompt_position_forced(tiny):
    model, _ = tiny
    point = hook_points(model, "mlp")[1]
    got = {}
    h = point.module.register_forward_hook(lambda m, a, o: got.update(x=a[0].detach().clone()))
    try:
        with Intervention([(1, 4, 3.0)]).attach(model):
            model(input_ids=torch.tensor([[2, 10, 11, 12, 13]]))
    finally:
        h.remove()
    assert got["x"].shape[1] == 5
    assert torch.all(got["x"][0, :, 4] == 3.0)


def test_remove_restores_model_exactly(tiny):
    model, _ = tiny
    ids = torch.tensor([[2, 10, 11, 12]])
    with torch.no_grad():
        before = model(input_ids=ids).logits.clone()
        handle = Intervention([(0, u, 10.0) for u in range(8)]).attach(model)
        assert handle.attached
        during = model(input_ids=ids).logits.clone()
        handle.remove()
        after = model(input_ids=ids).logits
    assert not torch.equal(before, during)
    assert torch.equal(before, after)
    assert not handle.attached
    for p in hook_points(model, "mlp"):
        assert not p.module._forward_pre_hooks and not p.module._forward_hooks
    plain = sample_tokens(model, [2], [0, 1], max_new_tokens=8, eos_token_id=None)
    with Intervention([(0, u, 10.0) for u in range(8)]).attach(model):
        forced = sample_tokens(model, [2], [0, 1], max_new_tokens=8, eos_token_id=None)
    assert forced != plain
    assert sample_tokens(model, [2], [0, 1], max_new_tokens=8, eos_token_id=None) == plain


def test_context_removes_on_error(tiny):
    model, _ = tiny
    with pytest.raises(RuntimeError), Intervention([(0, 1, 1.0)]).attach(model):
        raise RuntimeError("boom")
    assert all(not p.module._forward_pre_hooks for p in hook_points(model, "mlp"))


def test_output_kind_is_forced(tiny):
    model, _ = tiny
    iv = Intervention([(1, 2, 7.0)], kind="residual")
    with torch.no_grad(), iv.attach(model):
        hs = model(input_ids=torch.tensor([[2, 10, 11]]), output_hidden_states=True).hidden_states
    assert torch.all(hs[1][0, :, 2] == 7.0)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_save_load_roundtrip(tiny, tmp_path, suffix):
    model, _ = tiny
    iv = Intervention.from_experts(fake_scores(model), k=10, statistic="on_p90")
    path = iv.save(tmp_path / f"iv{suffix}")
    back = Intervention.load(path)
    assert back == iv
    assert [np.float32(v) for *_, v in back.units] == [np.float32(v) for *_, v in iv.units]
    ids = torch.tensor([[2, 10, 11]])
    with torch.no_grad():
        with iv.attach(model):
            a = model(input_ids=ids).logits
        with back.attach(model):
            b = model(input_ids=ids).logits
    assert torch.equal(a, b)


def test_from_experts_picks_top_ap_and_statistic(tiny):
    model, _ = tiny
    sc = fake_scores(model)
    iv = Intervention.from_experts(sc, k=5)
    top = set(np.argsort(-sc.ap)[:5].tolist())
    assert {sc.flat(la, u) for la, u, _ in iv.units} == top
    for la, u, v in iv.units:
        assert v == pytest.approx(float(sc.on_p50[sc.flat(la, u)]))
    assert (iv.step, iv.concept, iv.source_lang, iv.statistic, iv.k) == (
        7,
        "water",
        "spa",
        "on_p50",
        5,
    )
    assert all(v == 0.0 for *_, v in Intervention.from_experts(sc, 4, "zero").units)
    assert all(v == 1.5 for *_, v in Intervention.from_experts(sc, 4, 1.5).units)
    assert all(v == -3.0 for *_, v in Intervention.from_experts(sc, 4, "-3").units)
    one = Intervention.from_experts(sc, 3, layer=1)
    assert all(la == 1 for la, *_ in one.units)


def test_random_units(tiny):
    model, _ = tiny
    sc = fake_scores(model)
    a = Intervention.random_units(model, 12, values_like=sc, seed=3)
    b = Intervention.random_units(model, 12, values_like=sc, seed=3)
    c = Intervention.random_units(model, 12, values_like=sc, seed=4)
    assert a == b and a != c and a.condition == "random" and a.k == 12
    for la, u, v in a.units:
        assert v == pytest.approx(float(sc.on_p50[sc.flat(la, u)]))  # its own on_p50
    experts = [(la, u) for la, u, _ in Intervention.from_experts(sc, 20).units]
    d = Intervention.random_units(sc, sum(sc.widths) - 20, values_like=sc, exclude=experts)
    assert not {(la, u) for la, u, _ in d.units} & set(experts)
    with pytest.raises(BabelscopeError, match="need unit scores"):
        Intervention.random_units(model, 3)
    assert all(v == 0 for *_, v in Intervention.random_units(model, 3, statistic="zero").units)


def test_bad_input(tiny, tmp_path):
    model, _ = tiny
    sc = fake_scores(model)
    total = sum(sc.widths)
    with pytest.raises(BabelscopeError, match=f"larger than the {total} units"):
        Intervention.from_experts(sc, total + 1)
    with pytest.raises(BabelscopeError, match="larger than"):
        Intervention.random_units(model, total + 1, values_like=sc)
    with pytest.raises(BabelscopeError, match="unknown forcing statistic 'median'"):
        Intervention.from_experts(sc, 3, statistic="median")
    with pytest.raises(BabelscopeError, match="not finite"):
        parse_statistic("nan")
    with pytest.raises(BabelscopeError, match="at least 1"):
        Intervention.from_experts(sc, 0)
    with pytest.raises(BabelscopeError, match="layers 0..1"):
        Intervention([(5, 0, 1.0)]).attach(model)
    with pytest.raises(BabelscopeError, match="made for another model"):
        Intervention([(0, 10_000, 1.0)]).attach(model)
    assert all(not p.module._forward_pre_hooks for p in hook_points(model, "mlp"))
    with pytest.raises(BabelscopeError, match="no intervention file"):
        Intervention.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(BabelscopeError, match="not a babelscope intervention"):
        Intervention.load(tmp_path / "bad.json")
    e = pytest.raises(BabelscopeError, Intervention.from_experts, sc, total + 1)
    assert "\n" not in str(e.value)


def test_linear_all_units_span_the_layers_modules(tiny):
    """With several hook points in a layer, unit indices run over their concatenation."""
    model, _ = tiny
    points = [p for p in hook_points(model, "linear_all") if p.layer == 1]
    assert len(points) > 1
    second = points[1]
    unit = points[0].width + 3  # unit 3 of the layer's second module
    got = {}
    with torch.no_grad(), Intervention([(1, unit, 9.0)], kind="linear_all").attach(model):
        # Registered after the forcing hook: sees the output the model goes on with.
        h = second.module.register_forward_hook(lambda m, a, o: got.update(y=o.detach().clone()))
        try:
            model(input_ids=torch.tensor([[2, 10, 11]]))
        finally:
            h.remove()
    assert torch.all(got["y"][..., 3] == 9.0)
    iv = Intervention.random_units(model, 5, statistic="zero", kind="linear_all", seed=1)
    with iv.attach(model):
        pass


def test_add_mode_shifts_units_by_their_value(tiny, tmp_path):
    model, _ = tiny
    points = hook_points(model, "mlp")
    ids = torch.tensor([[2, 5, 9, 11]])
    seen: dict[str, torch.Tensor] = {}

    def grab(name):
        def hook(module, args, output):
            seen[name] = args[0].detach().clone()

        return hook

    def run(name, iv=None):
        h = points[0].module.register_forward_hook(grab(name))
        try:
            if iv is None:
                model(input_ids=ids)
            else:
                with iv.attach(model):
                    model(input_ids=ids)
        finally:
            h.remove()

    shift = Intervention([(0, 3, 1.5), (0, 8, -0.5)], mode="add")
    run("plain")
    run("shifted", shift)
    diff = seen["shifted"] - seen["plain"]
    assert torch.allclose(diff[..., 3], torch.full_like(diff[..., 3], 1.5), atol=1e-5)
    assert torch.allclose(diff[..., 8], torch.full_like(diff[..., 8], -0.5), atol=1e-5)
    others = [u for u in range(diff.shape[-1]) if u not in (3, 8)]
    assert torch.allclose(diff[..., others], torch.zeros_like(diff[..., others]), atol=1e-6)
    again = Intervention.load(shift.save(tmp_path / "shift.json"))
    assert again.mode == "add" and again.units == shift.units
    with pytest.raises(BabelscopeError, match="unknown forcing mode"):
        Intervention([(0, 1, 1.0)], mode="mul")


def test_forcing_a_module_the_model_never_calls_is_an_error(monkeypatch):
    """A model whose MLP bypasses the forced module: forcing would change nothing."""
    from transformers.models.xglm.modeling_xglm import XGLMDecoderLayer

    from helpers_models import bypass, tiny_family_model

    model = tiny_family_model("xglm")
    ids = torch.randint(3, 300, (2, 5), generator=torch.Generator().manual_seed(0))
    iv = Intervention([(1, 3, 50.0), (2, 0, 50.0)], kind="mlp")
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with iv.attach(model) as h:
            assert not torch.allclose(model(input_ids=ids).logits, base)
        assert h.passes == 1 and h.calls.counts == [1, 1]
        bypass(monkeypatch, XGLMDecoderLayer, "fc2")
        msg = r"model\.layers\.1\.fc2 was never called during the forward pass \(and 1 more"
        with pytest.raises(BabelscopeError, match=msg), iv.attach(model):
            torch.testing.assert_close(model(input_ids=ids).logits, base)  # nothing forced
        assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
        iv.attach(model).remove()  # attached and removed without a forward pass: no error
        with pytest.raises(KeyError), iv.attach(model):  # an error inside is not masked
            raise KeyError("mine")
