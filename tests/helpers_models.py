"""Tiny random models of every family in the family table (hidden 32, MLP 48, 2-3 blocks).

The MLP width is deliberately not 4x the hidden size so that a wrong table entry (up vs
down projection, hidden vs intermediate) shows up as a width mismatch.
"""

from __future__ import annotations

import transformers as tf

HIDDEN, INTER, LAYERS, HEADS = 32, 48, 3, 2

_COMMON = dict(bos_token_id=0, pad_token_id=1, eos_token_id=2)


def family_config(family: str, vocab_size: int = 300):
    """A tiny config for ``family`` (a ``model_type`` of babelscope's family table)."""
    rope = dict(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, num_key_value_heads=1, max_position_embeddings=64, **_COMMON)  # fmt: skip
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=HIDDEN, n_inner=INTER, n_layer=LAYERS,
                             n_head=HEADS, **_COMMON)  # fmt: skip
    if family == "bloom":
        return tf.BloomConfig(
            vocab_size=vocab_size, hidden_size=HIDDEN, n_layer=LAYERS, n_head=HEADS, **_COMMON
        )
    if family == "xglm":
        return tf.XGLMConfig(vocab_size=vocab_size, max_position_embeddings=64, d_model=HIDDEN, num_layers=LAYERS,
                             attention_heads=HEADS, ffn_dim=INTER, decoder_start_token_id=2, **_COMMON)  # fmt: skip
    if family == "opt":
        return tf.OPTConfig(vocab_size=vocab_size, hidden_size=HIDDEN, ffn_dim=INTER, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, max_position_embeddings=64, word_embed_proj_dim=HIDDEN,
                            **_COMMON)  # fmt: skip
    if family == "opt_proj":  # OPT-350m style: embeddings projected in and out
        return tf.OPTConfig(vocab_size=vocab_size, hidden_size=HIDDEN, ffn_dim=INTER, num_hidden_layers=LAYERS,
                            num_attention_heads=HEADS, max_position_embeddings=64, word_embed_proj_dim=16,
                            do_layer_norm_before=False, **_COMMON)  # fmt: skip
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=INTER,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS, max_position_embeddings=64,
                                **_COMMON)  # fmt: skip
    if family == "llama":
        return tf.LlamaConfig(**rope)
    if family == "mistral":
        return tf.MistralConfig(**rope, sliding_window=8)
    if family == "qwen2":
        return tf.Qwen2Config(**rope)
    if family == "qwen3":
        return tf.Qwen3Config(**rope, head_dim=16)
    if family == "gemma":
        return tf.GemmaConfig(**rope, head_dim=16)
    if family == "gemma2":
        return tf.Gemma2Config(**rope, head_dim=16, sliding_window=8)
    if family == "gemma3_text":
        return tf.Gemma3TextConfig(**rope, head_dim=16, sliding_window=8)
    if family == "olmo":
        return tf.OlmoConfig(**rope)
    if family == "olmo2":
        return tf.Olmo2Config(**rope)
    raise ValueError(f"no tiny config for {family}")


#: Families with a tiny causal-LM config here (``opt_proj`` is an OPT variant).
TINY_FAMILIES = ["gpt2", "bloom", "xglm", "opt", "opt_proj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3",
                 "gemma", "gemma2", "gemma3_text", "olmo", "olmo2"]  # fmt: skip


def tiny_family_model(family: str, vocab_size: int = 300, seed: int = 0):
    """A tiny random causal LM of ``family`` in eval mode, fp32 on CPU."""
    import torch

    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(family_config(family, vocab_size))
    return model.eval()


def bypass(monkeypatch, block_cls: type, name: str) -> None:
    """Make every ``block_cls`` compute its linear submodule ``name`` *without calling it*
    (``F.linear`` on its weight, as BLOOM with ``pretraining_tp > 1`` and ``slow_but_exact``
    does): the numbers stay the same, but hooks on that module never run."""
    import torch
    import torch.nn.functional as F

    class Direct(torch.nn.Module):
        def __init__(self, real: torch.nn.Module) -> None:
            super().__init__()
            object.__setattr__(self, "real", real)  # not a submodule: no hooks of its own

        def forward(self, x):
            return F.linear(x, self.real.weight, self.real.bias)

    original = block_cls.forward

    def forward(self, *args, **kwargs):
        real = self._modules[name]
        self._modules[name] = Direct(real)
        try:
            return original(self, *args, **kwargs)
        finally:
            self._modules[name] = real

    monkeypatch.setattr(block_cls, "forward", forward)
