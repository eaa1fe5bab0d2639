"""The pre-training tokenizer: byte-level BPE, fixed special ids, BOS added, reloadable."""

from __future__ import annotations

from babelscope.pretrain.config import TokenizerConfig
from babelscope.pretrain.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    _balanced_texts,
    load_tokenizer,
    train_tokenizer,
)
from helpers import TINY_TEXTS


def _train(vocab_size: int = 320):
    return train_tokenizer(
        TINY_TEXTS, TokenizerConfig(vocab_size=vocab_size, min_frequency=1), model_max_length=32
    )


def test_special_ids_and_bos_added_on_encode(tmp_path):
    tok = _train()
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (
        BOS_ID,
        PAD_ID,
        EOS_ID,
        UNK_ID,
    )
    ids = tok("The water is cold.")["input_ids"]
    assert ids[0] == BOS_ID and EOS_ID not in ids
    # Generation "from BOS alone": the empty string encodes to BOS only.
    assert tok("")["input_ids"] == [BOS_ID]


def test_saved_tokenizer_reloads_with_autotokenizer_and_keeps_bos(tmp_path):
    tok = _train()
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    for text in ("Das Wasser im Fluss ist kalt.", "河里的水很冷。", "emoji 🙂 and ünïcödé"):
        assert again(text)["input_ids"] == tok(text)["input_ids"]
        assert again(text)["input_ids"][0] == BOS_ID
        # Byte-level: any text round-trips, nothing becomes <unk>.
        assert again.decode(again(text)["input_ids"], skip_special_tokens=True) == text
        assert UNK_ID not in again(text)["input_ids"]
    assert again.model_max_length == 32
    batch = again(["a", "a longer sentence here"], padding=True)
    assert batch["input_ids"][0][-1] == PAD_ID and batch["attention_mask"][0][-1] == 0


def test_vocab_size_is_respected():
    tok = _train(vocab_size=300)
    assert len(tok) <= 300


def test_balanced_texts_caps_each_language():
    texts = {"eng": ["x" * 10] * 100, "swa": ["y" * 10] * 3}
    out = _balanced_texts(texts, max_chars=50)
    assert sum(t.startswith("x") for t in out) == 5
    assert sum(t.startswith("y") for t in out) == 3
