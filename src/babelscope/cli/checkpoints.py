"""`babelscope checkpoints`: resolve and inspect a checkpoint series."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("inspect")
def inspect_cmd(
    series: str = typer.Argument(
        ..., help="A directory of step-N checkpoints, or a JSON/TOML series spec."
    ),
    data: Path = typer.Option(
        None, help="Data directory: held-out sentences per language (default: built-in text)."
    ),
    per_lang: int = typer.Option(32, help="Held-out sentences per language from --data."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records instead of a table."),
    out: Path = typer.Option(
        None, help="Also write the table (.json, or .parquet with provenance)."
    ),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16."),
    ratio: float = typer.Option(
        10.0, help="Perplexity ratio above both neighbours that flags a broken checkpoint."
    ),
) -> None:
    """Per checkpoint: step, parameters, weight fingerprint, perplexity per language, flags."""
    import json
    import math

    from rich.console import Console
    from rich.table import Table

    from babelscope.checkpoints.inspect import inspect_series
    from babelscope.checkpoints.series import resolve_series
    from babelscope.io import provenance, write_json_atomic, write_parquet_atomic

    resolved = resolve_series(series)
    texts = None
    if data is not None:
        from babelscope.corpora.corpus import load_corpus

        corpus = load_corpus(data)
        held = corpus[corpus["split"] == "heldout"]
        held = held if len(held) else corpus
        texts = {
            lang: g["text"].head(per_lang).tolist() for lang, g in held.groupby("lang", sort=True)
        }
    df = inspect_series(resolved, texts, device=device, dtype=dtype, ratio=ratio)
    records = json.loads(df.to_json(orient="records"))
    if as_json:
        print(
            json.dumps(
                {"series": resolved.name, "checkpoints": records}, indent=2, ensure_ascii=False
            )
        )
    else:
        table = Table(title=f"checkpoint series {resolved.name}")
        for col in df.columns:
            table.add_column(
                col, justify="right" if col not in ("fingerprint", "flags") else "left"
            )
        for r in df.itertuples(index=False):
            cells = []
            for col, v in zip(df.columns, r, strict=True):
                if col.startswith("ppl"):
                    cells.append("inf" if not math.isfinite(v) else f"{v:.4g}")
                elif col == "fingerprint":
                    cells.append(str(v)[:12])
                elif col == "params":
                    cells.append(f"{v:,}")
                else:
                    cells.append(str(v))
            table.add_row(*cells, style="red" if r.flags else None)
        import sys

        # Piped output is not wrapped at 80 columns: keep the rows readable in logs.
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    if out is not None:
        prov = provenance(
            "checkpoints.inspect", series=resolved.to_dict(), ratio=ratio, dtype=dtype
        )
        if out.suffix == ".parquet":
            write_parquet_atomic(df, out, metadata=prov)
        else:
            write_json_atomic(out, {"provenance": prov, "checkpoints": records})
