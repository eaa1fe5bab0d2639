"""Markdown stripping, chatty-line removal, sentence splitting (also without spaces)."""

from babelscope.corpora.segment import (
    is_chatty,
    is_fragment,
    markdown_paragraphs,
    sentences_from_markdown,
    split_sentences,
)

DOC_EN = """Of course. Here is 30,000 words of varied text in English (eng), structured as you asked.

---

## 1. Scientific and Technical Disciplines

1. Scientific and Technical Disciplines

**Physics: Probing the Fundamental Nature of Reality**

At its core, physics is the study of **matter** and energy. It asks how the world works.

*   **Nucleus:** The control centre of the cell holds the DNA.
*   **Python**
- A bullet that is a sentence of its own.

### A heading without a stop
Here is a list:

At its core, physics is the study of **matter** and energy.
"""


def test_markdown_and_chatty_line_are_stripped():
    sents = sentences_from_markdown(DOC_EN, "eng")
    assert sents == [
        "At its core, physics is the study of matter and energy.",
        "It asks how the world works.",
        "Nucleus: The control centre of the cell holds the DNA.",
        "A bullet that is a sentence of its own.",
    ]
    joined = " ".join(sents)
    for junk in ("Of course", "30,000", "#", "**", "---", "Scientific", "Python", "Here is a list"):
        assert junk not in joined


def test_chatty_openers_in_other_languages():
    assert is_chatty("好的，我将为您生成约30,000字的中文文本，涵盖您指定的十个不同主题。")
    assert is_chatty(
        "Sawa, nimeelewa ombi lako kikamilifu. Nitakuandikia maneno 30,000 ya maandishi."
    )
    assert is_chatty("অবশ্যই। আমি প্রায় ৩,০০০ শব্দ করে মোট ৩০,০০০ শব্দ লিখব।")
    assert not is_chatty(
        "An anaplastologist sculpts and fits custom prosthetic devices for the face."
    )
    # A first paragraph that is prose stays.
    doc = "An anaplastologist sculpts prosthetic devices for the face.\n\nThey work with patients."
    assert markdown_paragraphs(doc)[0].startswith("An anaplastologist")


def test_multiline_chatty_paragraph_is_dropped_whole():
    doc = "Claro, aquí tienes 30,000 palabras de texto variado\nen español, como pediste.\n\nEl agua del río está fría y clara."
    assert sentences_from_markdown(doc, "spa") == ["El agua del río está fría y clara."]


def test_chinese_sentences_split_without_spaces():
    text = "河里的水很冷。她每天晚上演奏音乐！你去过那座城市吗？“战争结束了。”他说。"
    assert split_sentences(text, "zho") == [
        "河里的水很冷。",
        "她每天晚上演奏音乐！",
        "你去过那座城市吗？",
        "“战争结束了。”他说。",  # a quotation is not cut out of its sentence
    ]


def test_japanese_sentences_split_with_closing_brackets():
    text = "量子物理学は難しい。彼は「明日は雨だ。」と言った。本当ですか？"
    assert split_sentences(text, "jpn") == [
        "量子物理学は難しい。",
        "彼は「明日は雨だ。」と言った。",
        "本当ですか？",
    ]


def test_spaced_scripts_respect_abbreviations_and_ordinals():
    en = "Dr. Black met J. R. Smith in c. 10,000 BCE. They talked, e.g. about rain. It rained!"
    assert split_sentences(en, "eng") == [
        "Dr. Black met J. R. Smith in c. 10,000 BCE.",
        "They talked, e.g. about rain.",
        "It rained!",
    ]
    de = "Das 21. Jahrhundert ist vernetzt. Es ist komplex."
    assert split_sentences(de, "deu") == ["Das 21. Jahrhundert ist vernetzt.", "Es ist komplex."]
    hi = "भौतिकी प्रकृति का अध्ययन है। यह ऊर्जा को समझती है।"
    assert split_sentences(hi, "hin") == ["भौतिकी प्रकृति का अध्ययन है।", "यह ऊर्जा को समझती है।"]
    ar = "هل تحب الموسيقى؟ نعم أحبها كثيرا."
    assert len(split_sentences(ar, "ara")) == 2


def test_fragments_and_duplicates_are_dropped():
    assert is_fragment("Physics and Chemistry", "eng")  # a heading: no final stop
    assert is_fragment("Yes it is.", "eng")  # three words
    assert is_fragment("Here is the list:", "eng")
    assert not is_fragment("The water in the river is cold.", "eng")
    assert is_fragment("是的。", "zho")
    assert not is_fragment("河里的水很冷而且很深。", "zho")
    doc = "The water in the river is cold.\n\nThe water in the river is cold.\n\nMusic plays in the city tonight."
    assert sentences_from_markdown(doc, "eng") == [
        "The water in the river is cold.",
        "Music plays in the city tonight.",
    ]


def test_real_dataset_build_text_is_clean():
    from babelscope.corpora.sources.dataset_build import load_language

    for lang in ("eng", "zho", "swa"):
        rows = load_language(lang)
        assert len(rows) > 300
        texts = [r.text for r in rows]
        assert len(set(texts)) == len(texts)
        assert not any(t.startswith(("#", "*", "-")) or "**" in t for t in texts)
        assert not any(t.startswith(("Of course", "好的", "Sawa, nimeelewa")) for t in texts)
        assert not any(
            "30,000 words" in t or "30,000字" in t or "maneno 30,000" in t for t in texts
        )
