"""The one table of architecture knowledge: where the blocks, the MLP and the output head live.

Everything babelscope knows about a model architecture is a line in :data:`FAMILIES`,
keyed by ``config.model_type``. A line says where the list of transformer blocks is,
where the MLP's up and down projections sit inside a block, and which config fields give
the widths that :func:`check_widths` compares with the modules actually found.

To support a new family, add one line, e.g.::

    "phi3": FamilySpec("phi3", layers="model.layers", down_proj="mlp.down_proj", up_proj="mlp.gate_up_proj"),

and check it with ``tests/test_families.py`` (a tiny random model of the family).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from babelscope.errors import BabelscopeError


@dataclass(frozen=True)
class Bypass:
    """A configuration under which a family computes projections *without calling* their
    modules (``F.linear`` on weight slices), so hooks on those modules never run.

    ``modules``: paths inside a block that are bypassed; ``applies(model)``: whether this
    model is configured (and its installed modeling code written) that way; ``cause``: the
    sentence the error gives, with the fix.
    """

    modules: tuple[str, ...]
    applies: Callable[[torch.nn.Module], bool]
    cause: str


@dataclass(frozen=True)
class FamilySpec:
    """Where things are in one architecture family (paths are dotted module names).

    Attributes:
        model_type: ``config.model_type`` of the family.
        layers: path of the ``nn.ModuleList`` of transformer blocks from the top model
            (``AutoModelForCausalLM``); its parent is the base model whose output is the
            last residual state.
        down_proj: the MLP down projection inside a block; its *input* is a neuron (``mlp``).
        up_proj: the MLP up projection inside a block; its *output* is ``mlp_pre``.
        hidden_field / intermediate_field / layers_field: config fields for the residual
            width, the MLP width and the number of blocks (``intermediate_field=None``:
            the MLP width is ``intermediate_mult`` times the hidden size, as in BLOOM).
        text_config: sub-config holding those fields in multimodal wrappers (Gemma 3).
        final_proj: a projection applied after the final norm inside the base model
            (OPT's ``project_out``), which changes the width of the last residual state.
        final_norm: the norm applied to the last block's output (path from the top
            model); the logit lens decodes every layer through it, then ``final_proj``
            and ``lm_head``. A family whose norm can be switched off (OPT-350m) finds
            ``None`` there and skips it.
        lm_head: the output head (path from the top model) mapping the final residual
            state to logits (where a transformers version names it otherwise, the
            model's ``get_output_embeddings()``).
        logit_softcap_field: config field of a soft cap applied to the logits
            (``cap * tanh(logits / cap)``, Gemma 2/3); ``None``: no cap.
        bypass: a configuration under which the family skips calling some modules
            (:class:`Bypass`); hook points on them are refused up front.
    """

    model_type: str
    layers: str
    down_proj: str
    up_proj: str
    hidden_field: str = "hidden_size"
    intermediate_field: str | None = "intermediate_size"
    layers_field: str = "num_hidden_layers"
    intermediate_mult: int = 4
    text_config: str | None = None
    final_proj: str | None = None
    final_norm: str | None = None
    lm_head: str = "lm_head"
    logit_softcap_field: str | None = None
    bypass: Bypass | None = None

    @property
    def base(self) -> str:
        """Path of the base model (the parent of the block list)."""
        return self.layers.rsplit(".", 1)[0]

    def text_cfg(self, config: Any) -> Any:
        return getattr(config, self.text_config) if self.text_config else config

    def hidden_size(self, config: Any) -> int:
        return int(getattr(self.text_cfg(config), self.hidden_field))

    def intermediate_size(self, config: Any) -> int:
        cfg = self.text_cfg(config)
        value = getattr(cfg, self.intermediate_field, None) if self.intermediate_field else None
        # GPT-2's n_inner is None by default: 4 * n_embd.
        return (
            int(value) if value is not None else self.intermediate_mult * self.hidden_size(config)
        )

    def num_layers(self, config: Any) -> int:
        return int(getattr(self.text_cfg(config), self.layers_field))


_GATED = dict(down_proj="mlp.down_proj", up_proj="mlp.up_proj", final_norm="model.norm")


def _tp(model: torch.nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "pretraining_tp", 1) or 1)


def _reads_tp(model: torch.nn.Module, path: str) -> bool:
    """Whether the installed forward of the module at ``path`` reads ``pretraining_tp``
    (transformers dropped the weight slicing from Llama's MLP; BLOOM still has it)."""
    try:
        return "pretraining_tp" in inspect.getsource(type(get_module(model, path)).forward)
    except (AttributeError, OSError, TypeError):
        return False  # no source to read: the hook-call count catches a bypass at run time


_BLOOM_TP = Bypass(
    ("mlp.dense_4h_to_h", "self_attention.dense"),
    lambda m: _tp(m) > 1 and bool(getattr(m.config, "slow_but_exact", False)),
    "the model computes this projection without calling the module, as BLOOM with "
    "pretraining_tp > 1 and slow_but_exact=True does; set slow_but_exact=False / "
    "pretraining_tp=1 in its config",
)
_LLAMA_TP = Bypass(
    tuple(f"mlp.{n}_proj" for n in ("gate", "up", "down"))
    + tuple(f"self_attn.{n}_proj" for n in "qkvo"),
    lambda m: _tp(m) > 1 and _reads_tp(m, "model.layers.0.mlp"),
    "the model computes this projection without calling the module, as Llama with "
    "pretraining_tp > 1 does in the transformers versions that slice its weights; set "
    "pretraining_tp=1 in its config",
)
_CAP = dict(logit_softcap_field="final_logit_softcapping")

#: The table. Keyed by ``config.model_type``.
FAMILIES: dict[str, FamilySpec] = {
    "gpt2": FamilySpec("gpt2", layers="transformer.h", down_proj="mlp.c_proj", up_proj="mlp.c_fc",
                       hidden_field="n_embd", intermediate_field="n_inner", layers_field="n_layer",
                       final_norm="transformer.ln_f"),
    "bloom": FamilySpec("bloom", layers="transformer.h", down_proj="mlp.dense_4h_to_h",
                        up_proj="mlp.dense_h_to_4h", intermediate_field=None, layers_field="n_layer",
                        final_norm="transformer.ln_f", bypass=_BLOOM_TP),
    "xglm": FamilySpec("xglm", layers="model.layers", down_proj="fc2", up_proj="fc1",
                       hidden_field="d_model", intermediate_field="ffn_dim", layers_field="num_layers",
                       final_norm="model.layer_norm"),
    "opt": FamilySpec("opt", layers="model.decoder.layers", down_proj="fc2", up_proj="fc1",
                      intermediate_field="ffn_dim", final_proj="project_out",
                      final_norm="model.decoder.final_layer_norm"),
    "gpt_neox": FamilySpec("gpt_neox", layers="gpt_neox.layers", down_proj="mlp.dense_4h_to_h",
                           up_proj="mlp.dense_h_to_4h", final_norm="gpt_neox.final_layer_norm"),
    "llama": FamilySpec("llama", layers="model.layers", **_GATED, bypass=_LLAMA_TP),
    "mistral": FamilySpec("mistral", layers="model.layers", **_GATED),
    "qwen2": FamilySpec("qwen2", layers="model.layers", **_GATED),
    "qwen3": FamilySpec("qwen3", layers="model.layers", **_GATED),
    "gemma": FamilySpec("gemma", layers="model.layers", **_GATED),
    "gemma2": FamilySpec("gemma2", layers="model.layers", **_GATED, **_CAP),
    "gemma3_text": FamilySpec("gemma3_text", layers="model.layers", **_GATED, **_CAP),
    # Gemma 3 with a vision tower: the text model sits inside the multimodal wrapper.
    "gemma3": FamilySpec("gemma3", layers="model.language_model.layers", text_config="text_config",
                        **{**_GATED, "final_norm": "model.language_model.norm"}, **_CAP),
    "olmo": FamilySpec("olmo", layers="model.layers", **_GATED),
    "olmo2": FamilySpec("olmo2", layers="model.layers", **_GATED),
}  # fmt: skip


def get_module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at a dotted ``path`` (``"model.layers"``, ``"mlp.down_proj"``)."""
    mod = root
    for part in path.split("."):
        if not hasattr(mod, part):
            raise AttributeError(path)
        mod = getattr(mod, part)
    return mod


def _module_types(model: torch.nn.Module, limit: int = 12) -> str:
    seen: list[str] = []
    for m in model.modules():
        name = type(m).__name__
        if name not in seen:
            seen.append(name)
    more = f" and {len(seen) - limit} more" if len(seen) > limit else ""
    return ", ".join(seen[:limit]) + more


def family_of(model: torch.nn.Module) -> FamilySpec:
    """The table line for ``model`` (by ``model.config.model_type``), checked against the model.

    Raises BabelscopeError for an unknown family (naming the module types found and how to
    add a line) and when the table's paths or widths do not match the model.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    spec = FAMILIES.get(model_type) if model_type else None
    if spec is None:
        raise BabelscopeError(
            f"unsupported model family '{model_type}' ({type(model).__name__}; modules: {_module_types(model)}): "
            f"add a line for it to FAMILIES in babelscope/activations/families.py "
            f"(block list path, MLP down and up projection); supported: {', '.join(sorted(FAMILIES))}"
        )
    check_widths(model, spec)
    return spec


GENERIC_BYPASS = (
    "the model computes this projection without calling the module (its forward uses the "
    "weights directly, e.g. F.linear on weight slices, or a fused kernel), so its units can "
    "be neither read nor forced"
)


def bypass_hint(model: torch.nn.Module, spec: FamilySpec) -> str:
    """Why a hook point of ``model`` may never be called: the family's known bypass when
    it applies, else the general cause (naming ``pretraining_tp`` when it is above 1)."""
    if spec.bypass is not None and spec.bypass.applies(model):
        return spec.bypass.cause
    if _tp(model) > 1:
        return (
            f"{GENERIC_BYPASS}; its config has pretraining_tp = {_tp(model)}, which makes some "
            "models compute projections from weight slices: try pretraining_tp=1"
        )
    return GENERIC_BYPASS


def check_not_bypassed(model: torch.nn.Module, spec: FamilySpec, names: Sequence[str]) -> None:
    """Refuse hook points (dotted module names) that ``model``'s configuration bypasses."""
    if spec.bypass is None:
        return
    hit = [n for n in names if n.endswith(tuple(f".{m}" for m in spec.bypass.modules))]
    if hit and spec.bypass.applies(model):
        more = f" (and {len(hit) - 1} more)" if len(hit) > 1 else ""
        raise BabelscopeError(f"cannot hook {hit[0]}{more}: {spec.bypass.cause}")


def in_features(module: torch.nn.Module) -> int:
    """Input width of a linear-like module (``nn.Linear`` or GPT-2's transposed ``Conv1D``)."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    if hasattr(module, "nx"):  # transformers.pytorch_utils.Conv1D
        return int(module.nx)
    return int(module.weight.shape[1])


def out_features(module: torch.nn.Module) -> int:
    """Output width of a linear-like module."""
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    if hasattr(module, "nf"):
        return int(module.nf)
    return int(module.weight.shape[0])


def is_linear(module: torch.nn.Module) -> bool:
    """An ``nn.Linear`` or GPT-2's ``Conv1D`` (a linear layer with transposed weights)."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def check_widths(model: torch.nn.Module, spec: FamilySpec) -> None:
    """Check that the table's modules exist and have the widths the config says."""
    config = model.config
    where = f"model family '{spec.model_type}'"
    try:
        layers = get_module(model, spec.layers)
    except AttributeError:
        raise BabelscopeError(
            f"{where}: no block list at '{spec.layers}' in {type(model).__name__}; "
            f"fix the line for '{spec.model_type}' in FAMILIES (babelscope/activations/families.py)"
        ) from None
    n_layers = spec.num_layers(config)
    if len(layers) != n_layers:
        raise BabelscopeError(
            f"{where}: {len(layers)} blocks at '{spec.layers}' but config says {n_layers}"
        )
    hidden, inter = spec.hidden_size(config), spec.intermediate_size(config)
    for path, got_fn, want, what in (
        (spec.down_proj, in_features, inter, "input of the down projection"),
        (spec.down_proj, out_features, hidden, "output of the down projection"),
        (spec.up_proj, out_features, inter, "output of the up projection"),
    ):
        for i, block in enumerate(layers):
            try:
                mod = get_module(block, path)
            except AttributeError:
                raise BabelscopeError(
                    f"{where}: block {i} has no module '{path}'; "
                    f"fix the line for '{spec.model_type}' in FAMILIES (babelscope/activations/families.py)"
                ) from None
            got = got_fn(mod)
            if got != want:
                raise BabelscopeError(
                    f"{where}: the {what} in block {i} ('{path}') has width {got} but the config says {want}"
                )


@dataclass
class OutputHead:
    """How a model turns its last residual state into logits (from the table's line).

    ``norm`` (``None`` when the model has none) and ``proj`` (OPT's ``project_out``,
    usually ``None``) apply to block outputs only: the base model's own output,
    ``hidden_states[L]``, has been through both already. ``softcap``: Gemma 2/3's
    ``cap * tanh(logits / cap)``, or ``None``.
    """

    norm: torch.nn.Module | None
    proj: torch.nn.Module | None
    head: torch.nn.Module
    softcap: float | None

    def logits(self, hidden: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        """Logits for residual states ``(..., d)``; ``final=True``: already normed and projected."""
        h = hidden
        if not final:
            if self.norm is not None:
                h = self.norm(h)
            if self.proj is not None:
                h = self.proj(h)
        out = self.head(h)
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


def output_head(model: torch.nn.Module) -> OutputHead:
    """The final norm, output projection and LM head of ``model``, found through its table line.

    Raises BabelscopeError when the line names no final norm or a module is missing, and
    when the head's input width is not the width of the base model's output.
    """
    spec = family_of(model)
    where = f"model family '{spec.model_type}'"
    fix = f"fix the line for '{spec.model_type}' in FAMILIES (babelscope/activations/families.py)"
    if spec.final_norm is None:
        raise BabelscopeError(f"{where}: the table names no final norm (final_norm): {fix}")
    try:
        norm = get_module(model, spec.final_norm)
        try:
            head = get_module(model, spec.lm_head)
        except AttributeError:
            # Renamed across transformers versions (GPT-NeoX: embed_out -> lm_head).
            get_out = getattr(model, "get_output_embeddings", None)
            head = get_out() if get_out is not None else None
            if head is None:
                raise
    except AttributeError as e:
        raise BabelscopeError(
            f"{where}: no module '{e.args[0]}' in {type(model).__name__}: {fix}"
        ) from None
    proj = getattr(get_module(model, spec.base), spec.final_proj, None) if spec.final_proj else None
    width = out_features(proj) if proj is not None else spec.hidden_size(model.config)
    if head is None or not hasattr(head, "weight"):
        raise BabelscopeError(f"{where}: '{spec.lm_head}' is not a linear output head: {fix}")
    if in_features(head) != width:
        raise BabelscopeError(
            f"{where}: the output head '{spec.lm_head}' takes width {in_features(head)} "
            f"but the base model's output has width {width}: {fix}"
        )
    cap = None
    if spec.logit_softcap_field:
        value = getattr(spec.text_cfg(model.config), spec.logit_softcap_field, None)
        cap = float(value) if value else None
    return OutputHead(norm=norm, proj=proj, head=head, softcap=cap)
