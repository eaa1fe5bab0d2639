"""Shared test material: a tiny multilingual corpus, a tokenizer trained on it in
milliseconds, and tiny random models saved in Hugging Face layout. Nothing from a hub."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TINY_TEXTS: dict[str, list[str]] = {
    "eng": [
        "The water in the river is cold.", "She plays music every evening.",
        "The city was quiet after the war.", "My family lives near the sea.",
        "He bought a book with his money.", "The sun rises over the mountains.",
        "Children learn to read at school.", "The doctor works in a small hospital.",
    ],
    "spa": [
        "El agua del río está fría.", "Ella toca música cada tarde.",
        "La ciudad estaba tranquila después de la guerra.", "Mi familia vive cerca del mar.",
        "Compró un libro con su dinero.", "El sol sale sobre las montañas.",
        "Los niños aprenden a leer en la escuela.", "El médico trabaja en un hospital pequeño.",
    ],
    "deu": [
        "Das Wasser im Fluss ist kalt.", "Sie spielt jeden Abend Musik.",
        "Die Stadt war nach dem Krieg ruhig.", "Meine Familie wohnt am Meer.",
        "Er kaufte ein Buch mit seinem Geld.", "Die Sonne geht über den Bergen auf.",
        "Kinder lernen in der Schule lesen.", "Der Arzt arbeitet in einem kleinen Krankenhaus.",
    ],
    "zho": [
        "河里的水很冷。", "她每天晚上演奏音乐。", "战争之后城市很安静。", "我的家人住在海边。",
        "他用自己的钱买了一本书。", "太阳从山上升起。", "孩子们在学校学习阅读。", "医生在一家小医院工作。",
    ],
}  # fmt: skip

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def tiny_corpus(langs: list[str] | None = None) -> pd.DataFrame:
    """A parallel corpus in the canonical schema (align_id = index of the translation)."""
    from babelscope.languages import script_of

    rows = []
    for lang, sents in TINY_TEXTS.items():
        if langs and lang not in langs:
            continue
        for i, s in enumerate(sents):
            rows.append(
                dict(id=f"tiny:{lang}:{i}", lang=lang, script=script_of(lang), text=s,
                     source="tiny", align_id=f"tiny:{i}", split="heldout" if i >= 6 else "train")
            )  # fmt: skip
    return pd.DataFrame(rows)


def make_tokenizer(out_dir: Path, vocab_size: int = 300):
    """Train a byte-level BPE on TINY_TEXTS and save it as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([s for v in TINY_TEXTS.values() for s in v], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def tiny_config(family: str, vocab_size: int):
    """A tiny config of the given family (2 layers, width 32)."""
    import transformers as tf

    if family == "gpt2":
        return tf.GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                             bos_token_id=0, eos_token_id=2, pad_token_id=1)  # fmt: skip
    if family == "xglm":
        return tf.XGLMConfig(vocab_size=vocab_size, max_position_embeddings=64, d_model=32,
                             num_layers=2, attention_heads=2, ffn_dim=64, bos_token_id=0,
                             eos_token_id=2, pad_token_id=1, decoder_start_token_id=2)  # fmt: skip
    raise ValueError(f"no tiny config for {family} in helpers.py")


def make_tiny_model(
    out_dir: Path, family: str = "xglm", seed: int = 0, tokenizer_dir: Path | None = None
):
    """Save a random tiny model (with tokenizer) in HF layout at ``out_dir``."""
    import torch
    import transformers as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = (
        tf.AutoTokenizer.from_pretrained(tokenizer_dir)
        if tokenizer_dir
        else make_tokenizer(out_dir)
    )
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(tiny_config(family, len(tok)))
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return model, tok


def make_tiny_series(root: Path, steps=(0, 1, 2), family: str = "xglm") -> Path:
    """A local checkpoint series: root/step-N for each step, different random weights."""
    tokdir = root / "_tokenizer"
    make_tokenizer(tokdir)
    for i, step in enumerate(steps):
        make_tiny_model(root / f"step-{step}", family=family, seed=i, tokenizer_dir=tokdir)
    import shutil

    shutil.rmtree(tokdir)
    return root
