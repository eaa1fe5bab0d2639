"""The self-contained HTML report: one file, figures embedded, opens from disk.

It reads only what the stages wrote into the run directory (config.toml,
checkpoints.json, results/*.parquet, figures/*.png, provenance.json), so it can be
re-rendered at any time with ``babelscope report``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from babelscope.io import read_parquet_metadata, write_text_atomic

# Figure file-name prefix -> report section. Each analysis draws its own figures
# (report/figures/<analysis>.py); the report only places them.
SECTIONS: list[tuple[str, str, str]] = [
    (
        "training",
        "Pre-training",
        "Training and held-out loss per language of the embedded model series.",
    ),
    (
        "probe",
        "Language identification by layer (Experiment 1)",
        "A logistic-regression probe predicts the language of token representations in each layer, "
        "trained and tested on different sentences. Accuracy is the mean over seeds with a 95 % "
        "interval that resamples test sentences. Chance = 1 / number of languages. The control task "
        "(Hewitt & Liang) gives every token type a fixed random language and trains the same probe: "
        "it is high where a vector identifies its token (the embedding layer), so selectivity = "
        "accuracy − control accuracy is the part that is about language. The lexical baseline is the "
        "same probe on token identity alone: how much of LID is just which tokens occur. A drop in the "
        "middle layers late in training would mean those layers stop keeping languages apart.",
    ),
    (
        "representations",
        "Representations of translations across layers and checkpoints",
        "On parallel sentences (the same align_id in every language), mean-pooled residual states per "
        "layer. Retrieval: is each sentence's nearest neighbour (cosine) among another language's "
        "sentences its translation? Precision@1 over all ordered language pairs, raw and after removing "
        "each language's mean vector (chance 1/N; null: the translation pairing shuffled; 95 % bootstrap "
        "interval over sentences); the gap between the two is how much of the representation is "
        "language identity. Linear CKA compares the geometry of the same sentences in two languages; "
        "with few sentences it is biased upwards, so its reference is the same CKA with the pairing "
        "shuffled (white line). The logit lens decodes each layer through the final norm and output "
        "head: the next-token mass on tokens of the input's own language and on English (tokens "
        "belong to a language when it holds at least 80 % of their normalised corpus frequency); "
        "early layers are not in the output basis, so their shares are what the head reads there. "
        "Read beside the LID probe (left panel): the layers where LID drops should be those where "
        "centred retrieval and CKA rise, if the languages merge there.",
    ),
    (
        "alignment",
        "Concept experts and their cross-lingual alignment (Experiment 2)",
        "For each concept and language, units are ranked by Average Precision (AP) of their pooled "
        "activation as a score for 'this sentence expresses the concept'. Every pool is split in two "
        "halves (translations in the same half): experts are chosen on one half and compared or scored "
        "on the other, both ways. overlap@K = share of the top-K experts two languages have in common; "
        "Jaccard the same on the union; transfer AP = held-out AP in language B of the experts found "
        "in language A; own-language AP = the same in A itself (its in-sample version, on the very "
        "sentences the experts were chosen on, is shown to expose the winner's curse); cross-lingual "
        "experts = units in the top K for a concept in at least m languages. The reference is a "
        "permutation null (labels permuted within half × source × length strata, the whole measure "
        "recomputed): grey band = null mean to 95th percentile, stars = above it at p ≤ 0.05. The "
        "different-concept reference (red) pairs a concept's experts with other concepts': alignment "
        "that is not about the concept shows there. The closed forms (K / units, the expected AP of a "
        "random ranking) are floors only.",
    ),
    (
        "shortcuts",
        "What the concept data measures: matched pools, shortcuts, lexical overlap",
        "A concept's positives are not a random draw: most positives of password are Django UI strings, "
        "most of rights UDHR articles. Each concept is therefore scored on a matched pool per language: "
        "the same number of positives in every language and, in every source × length stratum, a fixed "
        "number of negatives per positive, so a source or length detector ranks positives no better than "
        "chance. Left: for every (concept, language) the best trivial score (length in tokens, source, "
        "digit and punctuation share, a unit's activation at the first token; chosen on one half, AP on "
        "the other) against the median held-out AP of the top-K experts; above the dashed line the "
        "shortcut does as well as the experts, and a concept flagged in at least half of its languages "
        "is left out of the alignment averages. Right: whole-model alignment at the last checkpoint on "
        "the unmatched pools (the old scoring) and on the matched pools, each with its own permutation "
        "null. Lexical overlap: the concept's words as the model's tokenizer splits them; alignment is "
        "also reported over token-sharing and token-disjoint (concept, language pair) items apart.",
    ),
    (
        "steering",
        "Steering generation with experts (Experiment 3)",
        "The top-K experts of a concept, found on one source language, are fixed at their median "
        "activation on the concept's sentences while the model generates from the BOS token alone. "
        "Bars show the detected language of the outputs per checkpoint and condition (forced, no forcing, "
        "K random units forced); the concept-hit rate counts outputs that mention the concept in their "
        "own language.",
    ),
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.lead{color:#555} figure{margin:1.2em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#666;font-size:.9em} table{border-collapse:collapse;font-size:.85em;margin:.8em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right} th{background:#f5f5f7}
td.l,th.l{text-align:left} .flag{color:#b00020;font-weight:600} pre{background:#f5f5f7;padding:.8em;
overflow-x:auto;font-size:.8em} .note{background:#fff8e1;padding:.5em .8em;border-left:3px solid #f0b400}
"""

# Marks the page once every image has loaded, so a browser test can check that none is broken.
_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-broken-images', String(broken));
});
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    cap = html.escape(path.stem.replace("_", " "))
    return (
        f'<figure><img alt="{cap}" src="data:image/png;base64,{data}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def _table(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df is None or df.empty:
        return "<p><em>no rows</em></p>"
    return df.head(max_rows).to_html(
        index=False, border=0, float_format=lambda x: f"{x:.3f}", escape=True
    )


def _checkpoint_table(run_dir: Path) -> str:
    p = run_dir / "checkpoints.json"
    if not p.exists():
        return "<p><em>checkpoints were not inspected</em></p>"
    rows = json.loads(p.read_text()).get("checkpoints", [])
    if not rows:
        return "<p><em>no checkpoints</em></p>"
    df = pd.DataFrame(rows)
    ppl = [c for c in df.columns if c.startswith("ppl_")]
    if ppl:
        df["ppl (mean over languages)"] = df[ppl].mean(axis=1)
    keep = [
        c
        for c in ("step", "params", "fingerprint", "ppl (mean over languages)", "flags")
        if c in df.columns
    ]
    df = df[keep].copy()
    if "fingerprint" in df:
        df["fingerprint"] = df["fingerprint"].astype(str).str[:12]
    if "flags" in df:
        df["flags"] = df["flags"].apply(
            lambda f: ", ".join(f) if isinstance(f, list) else (f or "")
        )
    out = _table(df, max_rows=500)
    n_flag = int((df.get("flags", pd.Series(dtype=str)) != "").sum()) if "flags" in df else 0
    if n_flag:
        out = (
            f'<p class="note"><span class="flag">{n_flag} checkpoint(s) flagged</span> '
            "(duplicate or broken): left out of the analyses unless include_flagged is set.</p>"
            + out
        )
    return out


def _summary_tables(run_dir: Path) -> dict[str, str]:
    """Small numeric tables beside the figures, straight from the result files."""
    res = run_dir / "results"
    out: dict[str, str] = {}
    p = res / "probe.parquet"
    if p.exists():
        df = pd.read_parquet(p)
        from babelscope.report.claims import probe_claims, probe_table

        t = probe_table(df)
        t = t[t["step"].isin([t["step"].min(), t["step"].max()])]
        out["probe"] = (
            "<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in probe_claims(df)) + "</ul>"
            + "<h3>Probe at the first and last checkpoint: accuracy [95 % CI], control task, "
            "selectivity, lexical baseline</h3>" + _table(t.round(4), max_rows=100)
        )  # fmt: skip
    p = res / "similarity.parquet"
    if p.exists():
        from babelscope.analysis.representations.stage import summary

        out["representations"] = (
            "<h3>Representations per layer, first and last checkpoint: value [95 % CI], with the "
            "last checkpoint's chance, null 95th percentile and permutation p</h3>"
            + _table(summary(pd.read_parquet(p)), max_rows=200)
        )
    p = res / "alignment.parquet"
    if p.exists():
        df = pd.read_parquet(p)
        if {"step", "layer", "measure", "value", "p_value"} <= set(df.columns):
            from babelscope.report.claims import alignment_claims, alignment_table

            out["alignment"] = (
                "<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in alignment_claims(df)) + "</ul>"
                + "<h3>Per layer at the first and last checkpoint: value [95 % CI], permutation null "
                "(mean, 95th percentile), p, different-concept reference, floor</h3>"
                + _table(alignment_table(df).round(4), max_rows=200)
            )  # fmt: skip
            from babelscope.report.figures.control import control_pairs

            ov = res / "alignment_overlap.parquet"
            ctrl = control_pairs(pd.read_parquet(ov)) if ov.exists() else pd.DataFrame()
            if len(ctrl):
                out["alignment"] += (
                    "<h3>Known-positive control: original ↔ cipher copy (whole model), with the "
                    "pair's permutation null, beside the mean of the real language pairs</h3>"
                    + _table(ctrl.round(4), max_rows=100)
                )
    checks = _pool_checks(run_dir)
    if checks:
        out["shortcuts"] = checks
    p = res / "steering.parquet"
    if p.exists():
        df = pd.read_parquet(p)
        if {"step", "condition", "k", "lang", "source_lang"} <= set(df.columns):
            from babelscope.analysis.steering import dose_table, paired_tests

            pt = paired_tests(df)
            if len(pt):  # experts against each baseline at the largest K, per concept
                pt = pt[pt["k"] == pt["k"].max()]
            out["steering"] = (
                "<h3>Dose-response: shares of outputs with 95 % Wilson intervals "
                "(first and last steered checkpoint; pooled over concepts)</h3>"
                + _table(dose_table(df), max_rows=200)
                + "<h3>Experts against each baseline at the largest K: exact McNemar tests "
                "over the shared seeds (n_ab: experts yes, baseline no)</h3>"
                + _table(pt, max_rows=200)
            )
    return out


def _pool_checks(run_dir: Path) -> str:
    """Matching, shortcuts, lexical overlap and label precision (report/pool_checks.py)."""
    from babelscope.report import pool_checks as pc

    claims = pc.matching_claims(run_dir) + pc.shortcut_claims(run_dir) + pc.lexical_claims(run_dir)
    parts = (
        ["<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in claims) + "</ul>"] if claims else []
    )
    for title, t in (
        ("Each measure at the last checkpoint, unmatched and matched pools (value, null mean, p)",
         pc.matching_table(run_dir)),
        ("Shortcuts per concept (medians over languages; share of languages flagged)",
         pc.shortcut_table(run_dir)),
        ("Whole model, last checkpoint, without and with the flagged concepts",
         pc.flagged_table(run_dir)),
        ("Token-sharing and token-disjoint items, last checkpoint", pc.lexical_rows(run_dir)),
        ("Label precision of the lexicon against the pivot labels, per language",
         pc.label_precision_table(run_dir)),
    ):  # fmt: skip
        if len(t):
            parts.append(f"<h3>{html.escape(title)}</h3>" + _table(t.round(4), max_rows=300))
    return "".join(parts)


def _provenance(run_dir: Path) -> str:
    parts = []
    p = run_dir / "provenance.json"
    if p.exists():
        parts.append(f"<h3>provenance.json</h3><pre>{html.escape(p.read_text())}</pre>")
    for f in sorted((run_dir / "results").glob("*.parquet")):
        meta = read_parquet_metadata(f)
        if meta:
            meta.pop("environment", None)
            txt = json.dumps(meta, indent=1, sort_keys=True, default=str)
            if len(txt) > 4000:
                txt = txt[:4000] + "\n…"
            parts.append(f"<h3>{html.escape(f.name)}</h3><pre>{html.escape(txt)}</pre>")
    return "".join(parts) or "<p><em>none recorded</em></p>"


def _what_was_run(run_dir: Path) -> str:
    """One paragraph: the series, its checkpoints, the languages, the data hash."""
    bits = []
    ck = run_dir / "checkpoints.json"
    if ck.exists():
        info = json.loads(ck.read_text())
        steps = [r.get("step") for r in info.get("checkpoints", [])]
        if steps:
            bits.append(
                f"Series <b>{html.escape(str(info.get('series', '?')))}</b>: {len(steps)} checkpoints, "
                f"steps {steps[0]}–{steps[-1]} ({len(info.get('usable_steps', steps))} analysed)."
            )
    prov = run_dir / "provenance.json"
    if prov.exists():
        p = json.loads(prov.read_text())
        if p.get("data_hash"):
            bits.append(f"Data hash <code>{html.escape(str(p['data_hash']))}</code>.")
        env = p.get("environment", {})
        if env:
            bits.append(
                "babelscope "
                + html.escape(str(env.get("babelscope", "?")))
                + ", torch "
                + html.escape(str(env.get("torch", "?")))
                + ", transformers "
                + html.escape(str(env.get("transformers", "?")))
                + "."
            )
    return f"<p>{' '.join(bits)}</p>" if bits else ""


def render_report(run_dir: str | Path, title: str | None = None) -> Path:
    """Write ``<run_dir>/report.html`` from what the stages left there; return its path."""
    run_dir = Path(run_dir)
    figs = sorted((run_dir / "figures").glob("*.png"))
    cfg_text = (run_dir / "config.toml").read_text() if (run_dir / "config.toml").exists() else ""
    tables = _summary_tables(run_dir)
    body = [
        f"<h1>{html.escape(title or 'babelscope report: ' + run_dir.name)}</h1>",
        '<p class="lead">How a multilingual model moves from language-specific to shared, '
        "cross-lingual neurons over its pre-training checkpoints.</p>",
        "<h2>What was run</h2>",
        _what_was_run(run_dir),
        "<details><summary>resolved configuration (config.toml)</summary>"
        f"<pre>{html.escape(cfg_text) or 'no configuration saved'}</pre></details>",
        "<h2>Checkpoints</h2>",
        "<p>Every checkpoint is fingerprinted (hash of its weights) and sanity-checked (perplexity per "
        "language on held-out text). Duplicates and broken checkpoints are flagged.</p>",
        _checkpoint_table(run_dir),
    ]
    placed: set[Path] = set()
    for prefix, heading, text in SECTIONS:
        mine = [f for f in figs if f.name.startswith(prefix)]
        if not mine and prefix not in tables:
            continue
        body.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        body.extend(_img(f) for f in mine)
        placed.update(mine)
        if prefix in tables:
            body.append(tables[prefix])
    rest = [f for f in figs if f not in placed]
    if rest:
        body.append("<h2>Other figures</h2>")
        body.extend(_img(f) for f in rest)
    body += ["<h2>Provenance</h2>", _provenance(run_dir)]
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title or 'babelscope report')}</title><style>{_CSS}</style>"
        f"<script>{_JS}</script></head><body>" + "\n".join(body) + "</body></html>"
    )
    return write_text_atomic(run_dir / "report.html", page)
