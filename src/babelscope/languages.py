"""Language codes and scripts.

babelscope names languages by ISO 639-3 (``eng``, ``zho``). Sources use other tags
(Django: ``pt_BR``, ``zh_Hans``; UDHR: BCP 47), mapped here in one place.

A *control language* (:mod:`babelscope.corpora.cipher`) is a ciphered copy of a real
language, named by the original's code and ``~x``: ``eng~x`` is ciphered English. It is
written in :data:`CONTROL_SCRIPT` and is accepted wherever a language code is.
"""

from __future__ import annotations

from babelscope.errors import BabelscopeError

DEFAULT_LANGUAGES: tuple[str, ...] = (
    "eng", "spa", "por", "fra", "deu", "ita", "nld", "pol",
    "rus", "tur", "ara", "hin", "zho", "jpn", "vie", "swa",
)  # fmt: skip

# iso3 -> (English name, ISO 15924 script, iso 639-1 or None)
LANGUAGES: dict[str, tuple[str, str, str | None]] = {
    "ara": ("Arabic", "Arab", "ar"),
    "ben": ("Bengali", "Beng", "bn"),
    "bul": ("Bulgarian", "Cyrl", "bg"),
    "cat": ("Catalan", "Latn", "ca"),
    "ces": ("Czech", "Latn", "cs"),
    "dan": ("Danish", "Latn", "da"),
    "deu": ("German", "Latn", "de"),
    "ell": ("Greek", "Grek", "el"),
    "eng": ("English", "Latn", "en"),
    "est": ("Estonian", "Latn", "et"),
    "eus": ("Basque", "Latn", "eu"),
    "fas": ("Persian", "Arab", "fa"),
    "fin": ("Finnish", "Latn", "fi"),
    "fra": ("French", "Latn", "fr"),
    "heb": ("Hebrew", "Hebr", "he"),
    "hin": ("Hindi", "Deva", "hi"),
    "hrv": ("Croatian", "Latn", "hr"),
    "hun": ("Hungarian", "Latn", "hu"),
    "ind": ("Indonesian", "Latn", "id"),
    "ita": ("Italian", "Latn", "it"),
    "jpn": ("Japanese", "Jpan", "ja"),
    "kor": ("Korean", "Kore", "ko"),
    "lav": ("Latvian", "Latn", "lv"),
    "lit": ("Lithuanian", "Latn", "lt"),
    "msa": ("Malay", "Latn", "ms"),
    "nld": ("Dutch", "Latn", "nl"),
    "nob": ("Norwegian Bokmål", "Latn", "nb"),
    "nor": ("Norwegian", "Latn", "no"),
    "pol": ("Polish", "Latn", "pl"),
    "por": ("Portuguese", "Latn", "pt"),
    "ron": ("Romanian", "Latn", "ro"),
    "rus": ("Russian", "Cyrl", "ru"),
    "slk": ("Slovak", "Latn", "sk"),
    "slv": ("Slovenian", "Latn", "sl"),
    "spa": ("Spanish", "Latn", "es"),
    "srp": ("Serbian", "Cyrl", "sr"),
    "swa": ("Swahili", "Latn", "sw"),
    "swe": ("Swedish", "Latn", "sv"),
    "tam": ("Tamil", "Taml", "ta"),
    "tha": ("Thai", "Thai", "th"),
    "tur": ("Turkish", "Latn", "tr"),
    "ukr": ("Ukrainian", "Cyrl", "uk"),
    "urd": ("Urdu", "Arab", "ur"),
    "vie": ("Vietnamese", "Latn", "vi"),
    "zho": ("Chinese", "Hans", "zh"),
}

# Control languages: "<original>~x", written (mostly) in Armenian letters, a script that
# none of the default languages uses (see babelscope.corpora.cipher).
CONTROL_MARK = "~x"
CONTROL_SCRIPT = "Armn"
# The control that the embedded default adds (when its original is among the languages).
DEFAULT_CONTROLS: tuple[str, ...] = ("eng",)

# Scripts written without spaces between words: word matching there is by substring.
NO_SPACE_SCRIPTS = frozenset({"Hans", "Hant", "Jpan", "Thai", "Khmr", "Laoo", "Mymr"})

_ISO1_TO_ISO3 = {v[2]: k for k, v in LANGUAGES.items() if v[2]}
# Source-specific tags that do not reduce to a plain ISO 639-1 prefix.
_TAG_OVERRIDES = {
    "zh_hans": "zho", "zh-hans": "zho", "zh_cn": "zho", "zh": "zho",
    "pt_br": None, "es_ar": None, "es_co": None, "es_mx": None, "es_ni": None,
    "es_pr": None, "es_ve": None, "en_au": None, "en_ca": None, "en_gb": None,
    "en_ie": None, "de_ch": None, "fr_be": None, "fr_ca": None, "fr_ch": None,
    "zh_hant": None, "sr_latn": None, "ar_dz": None, "nb": "nob",
}  # fmt: skip
# Regional variants (None above) are skipped: the base language is already there.
# Individual languages that UDHR (ISO 639-3 of the text) names inside a macrolanguage.
_TAG_OVERRIDES.update(
    {"cmn": "zho", "arb": "ara", "swh": "swa", "pes": "fas", "zsm": "msa", "ekk": "est",
     "lvs": "lav"}
)  # fmt: skip


def tag_to_iso3(tag: str) -> str | None:
    """Map a locale / BCP 47 / ISO code to ISO 639-3; None for regional variants and unknowns."""
    t = tag.strip().lower()
    if t in _TAG_OVERRIDES:
        return _TAG_OVERRIDES[t]
    if t in LANGUAGES:
        return t
    base = t.replace("-", "_").split("_")[0]
    if t != base:  # a regional variant we did not list: skip, the base is preferred
        return None
    return _ISO1_TO_ISO3.get(base)


def control_code(original: str) -> str:
    """The code of the control language of ``original``: ``eng`` -> ``eng~x``."""
    return f"{original}{CONTROL_MARK}"


def control_original(lang: str) -> str | None:
    """The original of a control code (``eng~x`` -> ``eng``); None for any other code."""
    if lang.endswith(CONTROL_MARK) and len(lang) > len(CONTROL_MARK):
        return lang[: -len(CONTROL_MARK)]
    return None


def is_control(lang: str) -> bool:
    """Whether ``lang`` names a control language (``eng~x``)."""
    return control_original(lang) is not None


def is_known(lang: str) -> bool:
    """A language of the table, or the control of one."""
    return lang in LANGUAGES or control_original(lang) in LANGUAGES


def script_of(lang: str) -> str:
    """ISO 15924 script of a language (``Latn`` if the language is not in the table)."""
    if is_control(lang):
        return CONTROL_SCRIPT
    return LANGUAGES.get(lang, ("", "Latn", None))[1]


def name_of(lang: str) -> str:
    """English name; a control is "<name> cipher" (``eng~x``: "English cipher")."""
    original = control_original(lang)
    if original is not None:
        return f"{name_of(original)} cipher"
    return LANGUAGES.get(lang, (lang, "", None))[0]


def default_controls(languages: list[str] | tuple[str, ...]) -> list[str]:
    """The originals of the default controls that are among ``languages``."""
    return [lang for lang in DEFAULT_CONTROLS if lang in languages]


def check_languages(langs: list[str] | tuple[str, ...], known: set[str] | None = None) -> list[str]:
    """Validate ISO 639-3 codes (and control codes such as ``eng~x``); raise a one-line
    error naming the bad code and the fix."""
    out: list[str] = []
    universe = known if known is not None else set(LANGUAGES)
    for lang in langs:
        code = lang.strip().lower()
        original = control_original(code)
        if original is not None:
            if original not in LANGUAGES:
                raise BabelscopeError(
                    f"unknown control language '{lang}': a control is an ISO 639-3 code "
                    f"followed by {CONTROL_MARK}, such as eng{CONTROL_MARK}"
                )
            if known is not None and code not in known:
                raise BabelscopeError(
                    f"unknown language code '{lang}': choose from {', '.join(sorted(known))}"
                )
            if code not in out:
                out.append(code)
            continue
        if len(code) != 3 or not code.isalpha():
            hint = f" (did you mean '{tag_to_iso3(code)}'?)" if tag_to_iso3(code) else ""
            raise BabelscopeError(
                f"unknown language code '{lang}'{hint}: use ISO 639-3 codes such as eng, spa, zho"
            )
        if code not in universe:
            raise BabelscopeError(
                f"unknown language code '{lang}': choose from {', '.join(sorted(universe))}"
            )
        if code not in out:
            out.append(code)
    if not out:
        raise BabelscopeError("no languages given: pass at least one ISO 639-3 code, e.g. eng")
    return out
