"""``report.html``: one static page (no server, no network, one small inline script) to
review what was kept and why. Written by the report stage next to report.md, from the same
``report`` dict, with everything report.md has.

Sections: the verdict (first), summary (budget, PD cut-off, the TRL dataset folder, hold-out),
warnings, counts per stage and reject reasons, proxies (held-out accuracy with 95% CI, PD
weight, the unified model's row), the PD histogram, the aspect x aspect conflict matrix, the
length shift, coverage, the comparison against the hidden overall preference (when known), the
pairs nearest the cut-off on both sides, a sortable and filterable table of kept and dropped
pairs (html_pairs.py), the top kept and dropped pairs, stage times and versions. Figures are
PNGs saved in ``<run>/report/`` and embedded as base64; every user text is escaped with
``html.escape``. Colours are Okabe-Ito and always come with a word, number or symbol.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from ..run.artifacts import RunDir

from .html_pairs import (VERMILLION, esc, num, pairs_table, review_rows,  # noqa: F401
                         review_table)
from .html_style import CSS, SCRIPT
from .markdown import count_rows, drop_rows, score_only_note

FIGURES = {"pd_histogram": "PD histogram", "conflict_proxy": "aspect conflict (proxies)",
           "conflict_true": "aspect conflict (true ratings)", "length_shift": "length shift"}


# ----------------------------------------------------------------------------- figures
def write_figures(report: dict, run: RunDir, out: Path) -> dict[str, Path]:
    """The report's PNGs in ``out`` (the run's report/ folder); {} without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (the optional [plots] extra)
    except ImportError:
        return {}
    from .plots import aspect_conflict_matrix, length_shift, run_pd_histogram
    from ..select.export import load_inspect

    root = run.root
    from .run_report import numeric_pairs

    inspect = load_inspect(root, texts=False)  # the figures need numbers only
    s = report["selection"]
    figs: dict[str, Path] = {}
    agrees = None
    pairs = numeric_pairs(root, ["pair_id", "h_agrees_overall"])
    if "h_agrees_overall" in pairs.columns:  # evaluation only: the report may read the oracle
        agrees = inspect[["pair_id"]].merge(pairs[["pair_id", "h_agrees_overall"]],
                                            on="pair_id", how="left")["h_agrees_overall"]
        agrees = agrees.to_numpy(np.float64)
    figs["pd_histogram"] = run_pd_histogram(inspect["pd"].to_numpy(), inspect["kept"],
                                            s.get("pd_cutoff"), out, agrees)
    for key, what in (("proxy", "proxies' reward gaps"), ("true", "true ratings")):
        m = report["conflict_matrix"].get(key)
        if m:
            frame = pd.DataFrame(m).T.astype(float)
            aspect_conflict_matrix(frame, out, f"Aspect conflict from the {what}",
                                   f"conflict_{key}.png")
            figs[f"conflict_{key}"] = out / f"conflict_{key}.png"
    if s["length_before"] and s["length_after"]:
        figs["length_shift"] = length_shift(s["length_before"], s["length_after"], out)
    return figs


def _img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).is_file():
        return ('<p class="note">Figure not drawn (matplotlib is not installed: '
                '<code>pip install "pdselect[plots]"</code>).</p>')
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


# ----------------------------------------------------------------------------- tables
def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    """``header`` and cells are plain values: every one is escaped here."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else esc(_cell(c))}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _cell(c) -> str:
    return num(c) if isinstance(c, (float, int, np.floating, np.integer)) and \
        not isinstance(c, (bool, np.bool_)) else ("n/a" if c is None else str(c))


def _heat(m: dict) -> str:
    """A conflict matrix as a table whose cells are tinted by value (numbers kept as text)."""
    names = list(m)
    rows = []
    for a in names:
        cells = [a]
        for b in names:
            v = m[a][b]
            if v is None:
                cells.append(_Raw('<span class="na">&mdash;</span>'))
            else:
                alpha = min(1.0, float(v) / 0.5)
                cells.append(_Raw(f'<span class="heat" style="background:rgba({VERMILLION},'
                                  f'{0.75 * alpha:.2f})">{num(v, 2)}</span>'))
        rows.append(cells)
    return _table(["label aspect \u2193 / other aspect \u2192", *names], rows, "matrix")


# ----------------------------------------------------------------------------- page
def _summary(r: dict, cfg) -> str:
    s, agg = r["selection"], r["aggregate"]
    budget = (f"{cfg.select.budget_count} pairs" if cfg.select.budget_count
              else f"{cfg.select.budget:.0%}")
    kv = [("source", r["source"]), ("run", r["run_dir"]), ("seed", r["seed"]),
          ("selector", s["method"]), ("budget", budget),
          ("kept", f"{s['n_selected']} of {s['n_pool']} pool pairs")]
    if s.get("pd_cutoff") is not None:
        kv.append(("PD cut-off", f"{'<=' if s['method'] == 'pd' else '>='} "
                                 f"{s['pd_cutoff']:.4f} ({s.get('n_kept_pd_positive', 0)} kept "
                                 "pairs with PD > 0)"))
    if s.get("pd_pool"):
        p = s["pd_pool"]
        kv.append(("PD of the pool",
                   f"min {num(p['min'])}, mean {num(p['mean'])}, max {num(p['max'])}"))
    kv.append(("conflict level", "natural (no subsampling)" if r.get("conflict_level") is None
               else f"{r['conflict_level']:.0%}"))
    hold = r.get("holdout")
    if isinstance(hold, dict):
        hold = ", ".join(f"{k}={v}" for k, v in hold.items())
    elif isinstance(hold, bool):
        hold = "yes" if hold else "no"
    n = (f"{agg.get('n_test', 0)} of {agg.get('n_pairs', 0)} pairs held out (test split, never "
         "selected)" if agg.get("n_test") else "none: every pair is in the selection pool")
    kv.append(("evaluation hold-out", n if hold is None else f"{hold}; {n}"))
    if s.get("dataset"):
        kv.append(("TRL dataset", f"{s['dataset']} ({s.get('chat_format')} format)"))
    kv.append(("every pair", str(Path(r["run_dir"]) / "select" / "inspect.parquet")))
    return ('<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in kv)
            + "</dl>")


def render_html(r: dict, cfg, figures: dict[str, Path] | None = None) -> str:
    """The page for the report dict ``r``, one helper per section; ``figures``: PNGs by key."""
    figures = figures or {}
    s = r["selection"]
    aspects = list(r["aggregate"]["aspects"])
    P = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>pdselect report: {esc(r['source'])}</title>",
         f"<style>{CSS}</style></head><body>",
         f"<h1>pdselect report: {esc(r['source'])}</h1>"]
    P += _verdict_section(r.get("verdict"))
    P += ['<section id="summary"><h2>Summary</h2>', _summary(r, cfg), "</section>"]
    P += _warnings_section(r)
    P += _counts_section(r)
    P += _proxies_section(r)
    P += _pd_section(figures)
    P += _conflict_section(r, figures)
    P += _length_section(s, figures)
    P += _coverage_section(s)
    P += _comparison_section(s)
    P += _cutoff_section(s, aspects)
    P += _review_section(r, aspects)
    P += _examples_sections(s, aspects)
    P += _run_section(r)
    P.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(P)


_VERDICT_LOOK = {"clear": ("clear", "\u2714"), "cannot tell": ("cannot", "?"),
                 "none": ("none", "\u2716")}


def _verdict_section(v: dict | None) -> list[str]:
    """The verdict, its confidence as a word and a symbol, and the evidence table."""
    if not v:
        return []
    cls, icon = _VERDICT_LOOK.get(v["confidence"], ("", "\u2022"))
    e = v["evidence"]
    P = ['<section id="verdict"><h2>Verdict</h2>',
         f'<div class="verdict {cls}"><span class="badge">{icon} '
         f'{esc(v["selector"] or "no selector")} (confidence: {esc(v["confidence"])})</span>'
         f'{esc(v["text"])}</div>']
    if e.get("auc"):
        diffs, kept = e.get("differences_vs_best", {}), e.get("kept", {})
        rows = [[m, a["auc"], _ci(a["ci95"]), diffs[m]["diff"] if m in diffs else "best",
                 _signed_ci(diffs[m]["ci95"]) if m in diffs else "",
                 _ci(kept.get(m, {}).get("agreement_ci95"))] for m, a in e["auc"].items()]
        P.append(_table(["selector", "conflict AUC", "95% CI (DeLong)", "best minus this",
                         "95% CI of the difference", "kept agreeing with overall, 95% CI"],
                        rows, "nowrap"))
    if e.get("jaccard_pd_margin") is not None:
        P.append(f'<p class="note">Overlap of PD\'s and the margin\'s kept sets (Jaccard): '
                 f'{num(e["jaccard_pd_margin"])}.</p>')
    return P + [f'<p class="note">Intervals: {esc(e["method"])}.</p>', "</section>"]


def _ci(lo_hi) -> str:
    if not lo_hi or any(x is None or not np.isfinite(x) for x in lo_hi):
        return "n/a"
    return f"{num(lo_hi[0])}\u2013{num(lo_hi[1])}"


def _signed_ci(lo_hi) -> str:
    """An interval of a difference: '+0.003 to +0.022' (a dash would read as a minus)."""
    if not lo_hi or any(x is None or not np.isfinite(x) for x in lo_hi):
        return "n/a"
    return f"{lo_hi[0]:+.3f} to {lo_hi[1]:+.3f}"


def _counts_section(r: dict) -> list[str]:
    """What each stage kept and dropped, and the reject reasons (as in report.md)."""
    rows, drops = count_rows(r), drop_rows(r)
    P = ['<section id="counts"><h2>Counts per stage</h2>',
         _table(["stage", "kept", "what", "dropped or rejected"], rows)]
    if drops:
        P += ['<p class="note">Dropped or set aside, by reason (details in each stage\'s '
              "rejects.jsonl):</p>", _table(["stage", "what", "reason", "count"], drops)]
    return P + ["</section>"]


def _run_section(r: dict) -> list[str]:
    """Stage times and the versions of the run (manifest.json)."""
    man = r.get("manifest", {})
    env = man.get("environment", {})
    vers = [[k, v] for k, v in env.get("versions", {}).items()]
    vers += [[k, env[k]] for k in ("python", "platform", "git_sha") if k in env]
    return ['<section id="run"><h2>Stage times and versions</h2>',
            '<div class="figs">',
            _table(["stage", "seconds"], [[k, v.get("wall_seconds")]
                                          for k, v in man.get("stages", {}).items()]),
            _table(["package", "version"], vers), "</div></section>"]


def _cutoff_section(s: dict, aspects: list[str]) -> list[str]:
    """The kept pairs last in selector order and the dropped pairs first in it."""
    ex = s.get("examples", {})
    if "near_kept" not in ex:
        return []
    return ['<section id="cutoff"><h2>Pairs nearest the cut-off</h2>',
            '<p class="note">Where the budget decided: the last kept pairs and the first '
            "dropped ones in the selector's order.</p><h3>Last kept</h3>",
            pairs_table(ex.get("near_kept", []), aspects, "near-kept"),
            "<h3>First dropped</h3>", pairs_table(ex.get("near_dropped", []), aspects,
                                                  "near-dropped"), "</section>"]


def _review_section(r: dict, aspects: list[str]) -> list[str]:
    """The sortable, filterable table; skipped when the run's inspection table is gone."""
    root = Path(r["run_dir"])
    if not (root / "select").is_dir():
        return []
    rows, n_pool = review_rows(root)
    return ['<section id="pairs"><h2>Kept and dropped pairs</h2>',
            review_table(rows, n_pool, aspects).replace('<table id="pair-table"',
                                                        '<div class="scroll"><table '
                                                        'id="pair-table"', 1)
            + "</div>", "</section>"]


def _warnings_section(r: dict) -> list[str]:
    warns = r.get("warnings", [])
    return ['<section id="warnings"><h2>Warnings</h2>',
            '<ul class="warn">' + "".join(f"<li>{esc(w)}</li>" for w in warns) + "</ul>"
            if warns else '<p class="ok">No warnings.</p>',
            "</section>"]


def _proxies_section(r: dict) -> list[str]:
    """Each aspect proxy's held-out accuracy with its 95% interval."""
    from ..reward.diagnostics import interval_of

    ci = r.get("proxy_ci95", {})
    pw = r.get("pd_weights") or {}
    w = pw.get("weights", {})
    rows = [[a, m.get("n_train"), m.get("n_val"), m.get("val_accuracy"),
             f"{num(ci.get(a, [None])[0])}\u2013{num(ci.get(a, [None, None])[1])}", w.get(a),
             m.get("length_corr_before"), m.get("length_corr_after")]
            for a, m in r["proxy"].get("aspects", {}).items()]
    if "unified" in r["proxy"]:
        m = next(iter(r["proxy"]["unified"].values()))
        rows.append(["(unified, margin baseline)", m.get("n_train"), m.get("n_val"),
                     m.get("val_accuracy"), _ci(interval_of(m)), None,
                     m.get("length_corr_before"), m.get("length_corr_after")])
    note = (f"PD weights used (score.weighting={esc(pw['weighting'])}): {esc(pw['rule'])}. "
            if pw else "")
    return ['<section id="proxies"><h2>Proxy reward models</h2>',
            _table(["aspect", "train pairs", "held-out pairs", "held-out accuracy", "95% CI",
                    "PD weight", "reward-length r (rho=0)", "reward-length r (debiased)"], rows,
                   "nowrap"),
            f'<p class="note">{note}A proxy whose interval is not above 0.5 adds noise to '
            f"PD. {esc(score_only_note(r))}</p>", "</section>"]


def _pd_section(figures: dict) -> list[str]:
    return ['<section id="pd"><h2>Preference divergence</h2>',
            '<p class="note">PD = &minus;(sum of the other aspects\' normalised gaps): negative '
            "when the other aspects agree with the pair's label. The PD selector keeps the most "
            "negative.</p>", _img(figures.get("pd_histogram"), "PD histogram"), "</section>"]


def _conflict_section(r: dict, figures: dict) -> list[str]:
    """The conflict matrices (figure and tinted table), from the proxies and the true ratings."""
    P = ['<section id="conflict"><h2>Aspect &times; aspect conflict</h2>'
         '<p class="note">Row k, column k\u2032: among pairs labelled by aspect k, the share '
         "that aspect k\u2032 rates the other way.</p>"]
    for key, what in (("proxy", "estimated from the proxies' reward gaps"),
                      ("true", "from the true ratings (evaluation only)")):
        m = r["conflict_matrix"].get(key)
        if m:
            P += [f'<div class="block" id="conflict-{key}"><h3>{esc(what.capitalize())}</h3>',
                  '<div class="figs">', _img(figures.get(f"conflict_{key}"), what), _heat(m),
                  "</div></div>"]
    if not r["conflict_matrix"].get("true"):
        P.append('<p class="note">No true per-aspect ratings: only the proxies\' estimate.</p>')
    return P + ["</section>"]


def _length_section(s: dict, figures: dict) -> list[str]:
    lb, la = s["length_before"], s["length_after"]
    P = ['<section id="length"><h2>Length shift (pool vs kept)</h2>']
    if lb and la:
        P.append(_table(["", "pairs", "share chosen longer", "mean len chosen",
                         "mean len rejected"],
                        [[g, d.get("n"), d["share_chosen_longer"], d["mean_len_chosen"],
                          d["mean_len_rejected"]] for g, d in (("pool", lb), ("kept", la))]))
        P.append(_img(figures.get("length_shift"), "length shift"))
    return P + ["</section>"]


def _coverage_section(s: dict) -> list[str]:
    cov = sorted(set(s["coverage_before"]) | set(s["coverage_after"]))
    return ['<section id="coverage"><h2>Per-aspect coverage</h2>',
            _table(["aspect", "pool", "kept", "share kept"],
                   [[a, s["coverage_before"].get(a, 0), s["coverage_after"].get(a, 0),
                     s["coverage_after"].get(a, 0) / max(1, s["coverage_before"].get(a, 0))]
                    for a in cov]), "</section>"]


def _comparison_section(s: dict) -> list[str]:
    """The selectors against the hidden overall preference; nothing when it is unknown."""
    if "comparison" not in s:
        return []
    c = s["comparison"]
    return ['<section id="comparison"><h2>Against the hidden overall preference</h2>',
            f'<p class="note">Pool: {num(c["pool"]["n_pairs"])} pairs, conflict rate '
            f'{num(c["pool"]["conflict_rate"])}. AUC: how well the selector\'s keep-score '
            "separates pairs agreeing with the overall preference.</p>",
            _table(["selector", "conflict AUC", "kept", "conflict rate of kept",
                    "agreement of kept, 95% CI (Wilson)"],
                   [[m, v.get("auc"), v["n_selected"], v["conflict_rate"],
                     _ci(v.get("agreement_ci95"))]
                    for m, v in c.items() if m != "pool"]), "</section>"]


def _examples_sections(s: dict, aspects: list[str]) -> list[str]:
    """The top kept and the top dropped pairs, texts and per-aspect gaps."""
    ex = s.get("examples", {})
    return ['<section id="kept"><h2>Top kept pairs</h2>',
            '<p class="note">First in the selector\'s order. &Delta;n: each aspect\'s normalised '
            "proxy gap (chosen minus rejected, in [&minus;1, 1]); the framed cell is the pair's "
            "label aspect. \u25b2 blue: that aspect prefers the chosen response; \u25bc "
            "vermillion: the rejected one.</p>",
            pairs_table(ex.get("kept", []), aspects, "kept"), "</section>",
            '<section id="dropped"><h2>Top dropped pairs</h2>',
            '<p class="note">Last in the selector\'s order (for PD: the most conflicting).</p>',
            pairs_table(ex.get("dropped", []), aspects, "dropped"), "</section>"]
