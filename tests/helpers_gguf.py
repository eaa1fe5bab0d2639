"""A tiny random Llama written as a GGUF file, the way llama.cpp's converter lays it out.

Nothing is downloaded: the tokenizer is the byte-level BPE of :mod:`helpers`, stored as GGUF
tokenizer metadata (``tokenizer.ggml.model = "gpt2"``: tokens, merges, token types and special
ids), and the weights are written in F32, so transformers' dequantisation is exact and the
model it loads computes the same logits as the torch model the file was written from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, CONTROL = 1, 3


def tiny_llama_config(vocab_size: int, seed: int = 0):
    """2 layers, width 32, 4 query heads over 2 key/value heads (exercises the GQA permute)."""
    import transformers as tf

    return tf.LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )  # fmt: skip


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` of q/k rows (transformers undoes it on load)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _gguf_tensors(model) -> dict[str, np.ndarray]:
    """The model's state dict under GGUF tensor names, q/k permuted as llama.cpp writes them."""
    cfg = model.config
    sd = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    out = {
        "token_embd.weight": sd["model.embed_tokens.weight"],
        "output_norm.weight": sd["model.norm.weight"],
        "output.weight": sd["lm_head.weight"],
    }
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}  # fmt: skip
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            w = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                w = _llama_cpp_permute(w, cfg.num_attention_heads)
            elif gg == "attn_k":
                w = _llama_cpp_permute(w, cfg.num_key_value_heads)
            out[f"blk.{i}.{gg}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def write_gguf(path: Path, model, tokenizer, name: str = "tiny-llama") -> Path:
    """Write ``model`` (a LlamaForCausalLM) and its byte-level BPE ``tokenizer`` to ``path``."""
    import gguf

    cfg = model.config
    tok = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab: dict[str, int] = tok["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "vocabulary ids must be dense"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    special = set(tokenizer.all_special_tokens)

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([CONTROL if t in special else NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab[tokenizer.bos_token])
    w.add_eos_token_id(vocab[tokenizer.eos_token])
    w.add_unk_token_id(vocab[tokenizer.unk_token])
    w.add_pad_token_id(vocab[tokenizer.pad_token])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)

    for tname, arr in _gguf_tensors(model).items():
        w.add_tensor(tname, arr, raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def make_tiny_gguf(path: Path, seed: int = 0, tokenizer=None):
    """A random tiny Llama written to ``path`` (a ``*.gguf`` file); returns (model, tokenizer).

    ``tokenizer`` (a fast byte-level BPE) is shared between calls to build a series; by default
    one is trained on :data:`helpers.TINY_TEXTS`.
    """
    import tempfile

    import torch
    import transformers as tf

    from helpers import make_tokenizer

    if tokenizer is None:
        with tempfile.TemporaryDirectory() as d:
            tokenizer = make_tokenizer(Path(d))
    torch.manual_seed(seed)
    model = tf.LlamaForCausalLM(tiny_llama_config(len(tokenizer))).eval()
    write_gguf(Path(path), model, tokenizer)
    return model, tokenizer
