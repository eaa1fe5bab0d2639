"""The one table of architecture knowledge: where the blocks and the MLP live, per family.

Everything babelscope knows about a model architecture is a line in :data:`FAMILIES`,
keyed by ``config.model_type``. A line says where the list of transformer blocks is,
where the MLP's up and down projections sit inside a block, and which config fields give
the widths that :func:`check_widths` compares with the modules actually found.

To support a new family, add one line, e.g.::

    "phi3": FamilySpec("phi3", layers="model.layers", down_proj="mlp.down_proj", up_proj="mlp.gate_up_proj"),

and check it with ``tests/test_families.py`` (a tiny random model of the family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from babelscope.errors import BabelscopeError


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


_GATED = dict(down_proj="mlp.down_proj", up_proj="mlp.up_proj")

#: The table. Keyed by ``config.model_type``.
FAMILIES: dict[str, FamilySpec] = {
    "gpt2": FamilySpec("gpt2", layers="transformer.h", down_proj="mlp.c_proj", up_proj="mlp.c_fc",
                       hidden_field="n_embd", intermediate_field="n_inner", layers_field="n_layer"),
    "bloom": FamilySpec("bloom", layers="transformer.h", down_proj="mlp.dense_4h_to_h",
                        up_proj="mlp.dense_h_to_4h", intermediate_field=None, layers_field="n_layer"),
    "xglm": FamilySpec("xglm", layers="model.layers", down_proj="fc2", up_proj="fc1",
                       hidden_field="d_model", intermediate_field="ffn_dim", layers_field="num_layers"),
    "opt": FamilySpec("opt", layers="model.decoder.layers", down_proj="fc2", up_proj="fc1",
                      intermediate_field="ffn_dim", final_proj="project_out"),
    "gpt_neox": FamilySpec("gpt_neox", layers="gpt_neox.layers", down_proj="mlp.dense_4h_to_h",
                           up_proj="mlp.dense_h_to_4h"),
    "llama": FamilySpec("llama", layers="model.layers", **_GATED),
    "mistral": FamilySpec("mistral", layers="model.layers", **_GATED),
    "qwen2": FamilySpec("qwen2", layers="model.layers", **_GATED),
    "qwen3": FamilySpec("qwen3", layers="model.layers", **_GATED),
    "gemma": FamilySpec("gemma", layers="model.layers", **_GATED),
    "gemma2": FamilySpec("gemma2", layers="model.layers", **_GATED),
    "gemma3_text": FamilySpec("gemma3_text", layers="model.layers", **_GATED),
    # Gemma 3 with a vision tower: the text model sits inside the multimodal wrapper.
    "gemma3": FamilySpec("gemma3", layers="model.language_model.layers", text_config="text_config", **_GATED),
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
