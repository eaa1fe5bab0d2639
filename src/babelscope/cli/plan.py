"""`babelscope plan`: a study's cost per stage before it runs (tokens, bytes, time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _size(n: float) -> str:
    if not n:
        return "-"
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def _count(n: float) -> str:
    if not n:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def _time(s: float | None) -> str:
    if s is None:
        return "n/e"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def print_plan(plan: dict[str, Any]) -> None:
    """The plan as a rich table with the sources of its figures underneath."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    a, d, s = plan["architecture"], plan["data"], plan["series"]
    console.print(
        f"[bold]plan[/bold] of {escape(plan['config'])} -> {escape(plan['run_dir'])} "
        f"(on {plan['device']}, {plan['dtype']})\n"
        f"model: {a['model_type']}, {a['layers']} layers, hidden {a['hidden']:,}, MLP {a['mlp']:,}, "
        f"vocabulary {a['vocab']:,}, {a['params'] / 1e6:,.1f} M parameters ({escape(a['source'])})\n"
        f"series: {s['checkpoints']} checkpoints ({escape(s['source'])}); data: {d['languages']} languages, "
        f"{d['sentences_per_pool']:.0f} sentences a pool, {d['concepts']} concepts, "
        f"{d['tokens_per_pooled_sentence']:.0f} tokens a pooled sentence ({escape(d['source'])})"
    )
    t = Table(title="per stage (n/e: not estimated)")
    for col in ("stage", "forward tokens", "generated", "activation cache", "peak RAM",
                "weights + batch", "disk", "downloads", "time"):  # fmt: skip
        t.add_column(col, justify="left" if col == "stage" else "right")
    for r in plan["stages"]:
        t.add_row(r["stage"], _count(r["forward_tokens"]), _count(r["generated_tokens"]),
                  _size(r["cache_bytes"]), _size(r["ram_bytes"]), _size(r["gpu_bytes"]),
                  _size(r["disk_bytes"]), _size(r["download_bytes"]), _time(r["seconds"]))  # fmt: skip
    tot = plan["total"]
    t.add_row("[bold]total", "", "", _size(tot["cache_bytes"]), "", "", _size(tot["disk_bytes"]),
              _size(tot["download_bytes"]), f"[bold]{_time(tot['seconds'])}")  # fmt: skip
    console.print(t)
    console.print(f"free disk at {escape(plan['run_dir'])}: {_size(plan['free_disk_bytes'])}")
    for r in plan["stages"]:
        for note in r["notes"]:
            console.print(f"  [dim]{r['stage']}: {escape(note)}[/dim]")
    cal = plan.get("calibration")
    if cal:
        console.print(f"  [dim]times: {escape('; '.join(cal['notes']))}; the rest timed on this machine "
                      "(babelscope.calibrate); loading counts the weight fingerprint, not reading "
                      "or downloading[/dim]")  # fmt: skip
    for note in plan["notes"]:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(
        config: Path = typer.Argument(
            None, help="Study configuration (TOML). Default: the embedded study."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
        calibrate: bool = typer.Option(
            True, "--calibrate/--no-calibrate", help="Time a random model here (no: no times)."
        ),
    ) -> None:
        """Before running: per stage the tokens forwarded and generated, the activation cache,
        peak memory, disk and downloads, and the time on this machine (from short timings of
        a random model of the study's architecture). Nothing is written."""
        from babelscope.config import load_config
        from babelscope.plan import make_plan

        cfg = load_config(config)
        plan = make_plan(cfg, calibrate=calibrate, where=str(config) if config else "")
        if as_json:
            print(json.dumps(plan, indent=2, default=str))
        else:
            print_plan(plan)
