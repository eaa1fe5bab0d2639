"""The user's own text, read into the canonical corpus schema.

Formats (chosen by the file name, or ``fmt``):

- ``.jsonl`` / ``.ndjson``: one JSON object a line with a text and a language field;
- ``.csv`` (and a ``.tsv`` whose header has the text and language columns): one row a
  sentence;
- ``.parquet``: a table with the same columns;
- ``.tsv`` otherwise: a *parallel* table, one column per language (the header is the
  language codes), one row per translation group (align id = the row number);
- a directory: a Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (or a
  directory ``datasets.load_dataset`` can read); a name such as ``owner/name`` that is
  not a path: a dataset on the hub (needs network).

Every error names the file, the line (or row) and the field, in one line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from babelscope.corpora.corpus import CORPUS_COLUMNS, SPLITS
from babelscope.errors import BabelscopeError
from babelscope.languages import check_languages, script_of

FORMATS = ("jsonl", "csv", "tsv", "parquet", "parallel-tsv", "hf")


def _where(path: str | Path, line: int | None = None, unit: str = "line") -> str:
    return f"{path}, {unit} {line}" if line is not None else str(path)


def read_utf8(path: Path) -> str:
    """The file's text; one-line errors for a missing/empty file and for non-UTF-8 bytes."""
    if not path.exists():
        raise BabelscopeError(f"{path}: no such file: check the path")
    if path.is_dir():
        raise BabelscopeError(f"{path}: is a directory, not a text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise BabelscopeError(
            f"{path}, line {line}, column {col}: byte 0x{data[start]:02x} is not UTF-8; "
            "save the file as UTF-8"
        ) from None
    if not text.strip():
        raise BabelscopeError(f"{path}: the file is empty: give at least one sentence")
    return text


def _check_lang(value: Any, where: str, field: str, allowed: set[str] | None) -> str:
    code = str(value).strip().lower() if value is not None else ""
    if not code or code in ("nan", "none"):
        raise BabelscopeError(f"{where}, field '{field}': no language code")
    try:
        check_languages([code])
    except BabelscopeError as e:
        raise BabelscopeError(f"{where}, field '{field}': {e}") from None
    if allowed is not None and code not in allowed:
        return ""  # a known language the build did not ask for: left out
    return code


def _check_text(value: Any, where: str, field: str) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        raise BabelscopeError(f"{where}, field '{field}': no text")
    if not isinstance(value, str):
        raise BabelscopeError(
            f"{where}, field '{field}': expected a string, got {type(value).__name__}"
        )
    text = " ".join(value.split())
    if not text:
        raise BabelscopeError(f"{where}, field '{field}': the text is empty")
    return text


def _require_columns(path: str | Path, columns: Iterable[str], needed: dict[str, str]) -> None:
    have = list(columns)
    for role, col in needed.items():
        if col not in have:
            opt = {"text": "--text-col", "language": "--lang-col"}.get(role, f"--{role}-col")
            raise BabelscopeError(
                f"{path}: no {role} column '{col}' (columns: {', '.join(map(str, have)) or 'none'}); "
                f"name it with {opt}"
            )


def _records_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    text = read_utf8(path)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BabelscopeError(
                f"{path}, line {lineno}: not valid JSON ({e.msg} at column {e.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise BabelscopeError(
                f"{path}, line {lineno}: expected a JSON object, got {type(obj).__name__}"
            )
        yield lineno, obj


def _records_delimited(path: Path, delimiter: str) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    text = read_utf8(path)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise BabelscopeError(f"{path}: the file is empty: give a header and rows") from None
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, dict]]:
        for row in reader:
            lineno = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise BabelscopeError(
                    f"{path}, line {lineno}: {len(row)} fields, the header has {len(header)}"
                )
            yield lineno, dict(zip(header, row, strict=True))

    return header, rows()


def _records_frame(df: pd.DataFrame) -> Iterator[tuple[int, dict]]:
    yield from enumerate(df.to_dict(orient="records"), start=1)


def _long_rows(
    path: str | Path,
    records: Iterable[tuple[int, dict]],
    *,
    text_col: str,
    lang_col: str,
    id_col: str | None,
    align_col: str | None,
    split_col: str | None,
    allowed: set[str] | None,
    unit: str = "line",
) -> list[dict]:
    out: list[dict] = []
    stem = Path(str(path)).stem
    for lineno, rec in records:
        where = _where(path, lineno, unit)
        for col in (text_col, lang_col):
            if col not in rec:
                role = "text" if col == text_col else "language"
                raise BabelscopeError(f"{where}: no field '{col}' (the {role} column)")
        lang = _check_lang(rec[lang_col], where, lang_col, allowed)
        text = _check_text(rec[text_col], where, text_col)
        if not lang:
            continue
        rid = rec.get(id_col) if id_col else None
        rid = f"user:{stem}:{lineno}" if rid is None or str(rid).strip() == "" else str(rid)
        align = rec.get(align_col) if align_col else None
        align = None if align is None or str(align).strip() in ("", "nan", "None") else str(align)
        split = rec.get(split_col) if split_col else None
        if split is not None and str(split) not in SPLITS:
            raise BabelscopeError(
                f"{where}, field '{split_col}': split '{split}' is not train or heldout"
            )
        out.append(dict(id=rid, lang=lang, text=text, align_id=align, split=split, _where=where))
    return out


def _parallel_rows(path: Path, allowed: set[str] | None) -> list[dict]:
    header, records = _records_delimited(path, "\t")
    langs: list[str] = []
    for i, col in enumerate(header, start=1):
        langs.append(_check_lang(col, _where(path, 1), f"column {i} of the header", allowed=None))
    if len(set(langs)) != len(langs):
        raise BabelscopeError(f"{path}, line 1: a language appears twice in the header")
    out: list[dict] = []
    for lineno, rec in records:
        for col, lang in zip(header, langs, strict=True):
            if allowed is not None and lang not in allowed:
                continue
            value = rec[col]
            if not value.strip():
                continue  # a missing translation is allowed
            text = _check_text(value, _where(path, lineno), col)
            out.append(
                dict(id=f"user:{path.stem}:{lang}:{lineno}", lang=lang, text=text,
                     align_id=f"user:{path.stem}:{lineno}", split=None,
                     _where=_where(path, lineno))
            )  # fmt: skip
    return out


def _load_hf(spec: str, split: str | None) -> tuple[pd.DataFrame, str]:
    try:
        import datasets
    except ImportError:
        raise BabelscopeError(
            f"{spec}: reading a Hugging Face dataset needs the 'datasets' package: pip install datasets"
        ) from None
    path = Path(spec)
    try:
        if path.is_dir():
            try:
                ds = datasets.load_from_disk(str(path))
            except FileNotFoundError:
                ds = datasets.load_dataset(str(path))
        else:
            ds = datasets.load_dataset(spec)
    except BabelscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the hub or the loader is the user's to fix
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise BabelscopeError(f"cannot load dataset '{spec}': {msg}") from None
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds.keys())
        chosen = split or ("train" if "train" in names else names[0])
        if chosen not in names:
            raise BabelscopeError(f"{spec}: no split '{chosen}' (splits: {', '.join(names)})")
        ds = ds[chosen]
    return ds.to_pandas(), "row"


def detect_format(path: str | Path) -> str:
    """The format for a path by its name: jsonl, csv, tsv, parquet or hf."""
    p = Path(path)
    if p.is_dir():
        return "hf"
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        return "tsv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if not p.exists() and "/" in str(path) and not suffix:
        return "hf"  # owner/name on the hub
    if not p.exists():
        raise BabelscopeError(f"{path}: no such file or directory: check the path")
    raise BabelscopeError(
        f"{path}: unknown format '{suffix or 'no extension'}': use .jsonl, .csv, .tsv, .parquet "
        "or a datasets directory"
    )


def load_user_data(
    path: str | Path,
    *,
    text_col: str = "text",
    lang_col: str = "lang",
    id_col: str | None = "id",
    align_col: str | None = "align_id",
    split_col: str | None = "split",
    languages: list[str] | None = None,
    fmt: str | None = None,
    hf_split: str | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Read the user's text into the canonical corpus schema (``CORPUS_COLUMNS``).

    ``id_col``, ``align_col`` and ``split_col`` are used when present (ids default to
    ``user:<file>:<line>``). With ``languages``, rows in other (valid) languages are left
    out. Rows without a split get one by alignment group (see ``build.assign_splits``).
    ``source`` is ``user:<file name>``.
    """
    from babelscope.corpora.build import assign_splits

    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise BabelscopeError(f"unknown user-data format '{fmt}': use one of {', '.join(FORMATS)}")
    allowed = set(check_languages(languages)) if languages else None
    long_opts = dict(text_col=text_col, lang_col=lang_col, id_col=id_col, align_col=align_col,
                     split_col=split_col, allowed=allowed)  # fmt: skip
    p = Path(path)
    if fmt == "jsonl":
        rows = _long_rows(p, _records_jsonl(p), **long_opts)
    elif fmt == "csv":
        header, recs = _records_delimited(p, ",")
        _require_columns(p, header, {"text": text_col, "language": lang_col})
        rows = _long_rows(p, recs, **long_opts)
    elif fmt == "tsv" or fmt == "parallel-tsv":
        header, recs = _records_delimited(p, "\t")
        if fmt == "tsv" and text_col in header and lang_col in header:
            rows = _long_rows(p, recs, **long_opts)
        else:
            rows = _parallel_rows(p, allowed)
    elif fmt == "parquet":
        if not p.exists():
            raise BabelscopeError(f"{p}: no such file: check the path")
        if p.stat().st_size == 0:
            raise BabelscopeError(f"{p}: the file is empty: give at least one sentence")
        try:
            df = pd.read_parquet(p)
        except Exception as e:  # noqa: BLE001 - a corrupt file is the user's to fix
            raise BabelscopeError(
                f"{p}: not a readable Parquet file ({type(e).__name__})"
            ) from None
        _require_columns(p, df.columns, {"text": text_col, "language": lang_col})
        rows = _long_rows(p, _records_frame(df), unit="row", **long_opts)
    else:
        df, unit = _load_hf(str(path), hf_split)
        _require_columns(path, df.columns, {"text": text_col, "language": lang_col})
        rows = _long_rows(str(path), _records_frame(df), unit=unit, **long_opts)
    if not rows:
        what = f" in {', '.join(sorted(allowed))}" if allowed else ""
        raise BabelscopeError(f"{path}: no sentences{what}: check the language column and codes")
    df = pd.DataFrame(rows)
    dup = df["id"].duplicated()
    if dup.any():
        first = df.loc[dup, "_where"].iloc[0]
        raise BabelscopeError(
            f"{first}, field '{id_col}': duplicate id '{df.loc[dup, 'id'].iloc[0]}'"
        )
    name = Path(str(path)).name
    df["source"] = f"user:{name}"
    df["script"] = df["lang"].map(script_of)
    missing = df["split"].isna()
    if missing.any():
        groups = df["align_id"].where(df["align_id"].notna(), df["id"])
        df.loc[missing, "split"] = assign_splits(groups, heldout_fraction, seed)[missing]
    return df[CORPUS_COLUMNS].reset_index(drop=True)
