"""A byte-level BPE tokenizer trained on the corpus, saved as a Hugging Face fast tokenizer.

Special tokens (ids fixed): ``<s>`` 0 (BOS), ``<pad>`` 1, ``</s>`` 2 (EOS), ``<unk>`` 3 —
XGLM's own layout. Encoding adds BOS in front and no EOS: ``tok("Hola")`` gives
``[0, ...]``, so a sentence is read exactly as the model saw sentences in training and
generation "from BOS alone" is ``tok("", return_tensors="pt")``. Training sequences end
each sentence with EOS explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from babelscope.pretrain.config import SPECIAL_TOKENS, TokenizerConfig

BOS, PAD, EOS, UNK = SPECIAL_TOKENS
BOS_ID, PAD_ID, EOS_ID, UNK_ID = range(len(SPECIAL_TOKENS))


def _balanced_texts(texts_by_lang: Mapping[str, Iterable[str]], max_chars: int) -> list[str]:
    """At most ``max_chars`` characters of each language, in corpus order."""
    out: list[str] = []
    for lang in sorted(texts_by_lang):
        used = 0
        for text in texts_by_lang[lang]:
            if used >= max_chars:
                break
            out.append(text)
            used += len(text)
    return out


def train_tokenizer(
    texts_by_lang: Mapping[str, Iterable[str]], cfg: TokenizerConfig, model_max_length: int
):
    """Train a byte-level BPE on per-language texts; return a ``PreTrainedTokenizerFast``.

    Each language contributes at most ``cfg.max_chars_per_language`` characters, so a
    language with ten times the text does not take most of the merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_balanced_texts(texts_by_lang, cfg.max_chars_per_language), trainer)
    assert tok.token_to_id(BOS) == BOS_ID and tok.token_to_id(EOS) == EOS_ID  # fixed by order above
    # BOS in front of every encoded text; the post-processor travels in tokenizer.json.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=model_max_length,
        padding_side="right",
    )


def load_tokenizer(path: str | Path):
    """Load a saved tokenizer (a checkpoint directory or a tokenizer directory)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
