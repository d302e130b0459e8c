"""``report.html``: one static page (no server, no script, no network) to see what was kept
and why. Written by the report stage next to report.md, from the same ``report`` dict.

Sections: summary (budget, PD cut-off, the TRL dataset folder, hold-out), warnings, proxies
(held-out accuracy with 95% CI), the PD histogram, the aspect x aspect conflict matrix (from the
proxies, and from the true ratings when they exist), the length shift (pool vs kept), coverage,
the comparison against the hidden overall preference (when known), and the top kept and dropped
pairs with their per-aspect normalised gaps. Figures are PNGs saved in ``<run>/report/`` and
embedded as base64; every user text (prompts, responses, aspect names, paths) is escaped with
``html.escape``. Without matplotlib the page keeps its tables and says the figures are missing.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..run.artifacts import RunDir

FIGURES = {"pd_histogram": "PD histogram", "conflict_proxy": "aspect conflict (proxies)",
           "conflict_true": "aspect conflict (true ratings)", "length_shift": "length shift"}
TEXT_SHOWN = 600  # characters of each text shown before "more"


def esc(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def num(v, digits: int = 3) -> str:
    """A number as the page shows it (the tests compare the run's tables through this)."""
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{digits}f}"


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
                cells.append(_Raw(f'<span class="heat" style="background:rgba(214,39,40,'
                                  f'{0.85 * alpha:.2f})">{num(v, 2)}</span>'))
        rows.append(cells)
    return _table(["label aspect \u2193 / other aspect \u2192", *names], rows, "matrix")


def _text(label: str, t) -> str:
    t = "" if t is None else str(t)
    body = esc(t[:TEXT_SHOWN])
    if len(t) > TEXT_SHOWN:
        body += (f'<details><summary>&hellip; {len(t) - TEXT_SHOWN} more characters'
                 f'</summary>{esc(t[TEXT_SHOWN:])}</details>')
    return (f'<div class="txt"><div class="lab">{esc(label)}</div>'
            f'<div class="body">{body}</div></div>')


def _pairs(rows: list[dict], aspects: list[str], section: str) -> str:
    if not rows:
        return '<p class="note">None.</p>'
    head = ["rank", "aspect", "PD", *[f"Δn {a}" for a in aspects], "len chosen", "len rejected"]
    out = [f'<table class="pairs" data-section="{esc(section)}"><thead><tr>'
           + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        cells = [f'<td class="rank">{num(r["rank"])}</td>', f"<td>{esc(r['aspect'])}</td>",
                 f'<td class="pd">{num(r["pd"])}</td>']
        for a in aspects:
            v = r.get(f"norm__{a}")
            own = " own" if a == r["aspect"] else ""
            if v is None or not math.isfinite(v):
                cells.append(f'<td class="gap{own}">n/a</td>')
                continue
            colour = "44,160,44" if v > 0 else "214,39,40"
            cells.append(f'<td class="gap{own}" style="background:rgba({colour},'
                         f'{0.7 * min(1.0, abs(v)):.2f})">{num(v)}</td>')
        cells += [f"<td>{num(r['len_chosen'])}</td>", f"<td>{num(r['len_rejected'])}</td>"]
        out.append(f'<tr class="pair" data-pair-id="{esc(r["pair_id"])}">' + "".join(cells)
                   + "</tr>")
        out.append(f'<tr class="texts"><td colspan="{len(head)}"><div class="three">'
                   + _text("prompt", r.get("prompt")) + _text("chosen", r.get("chosen"))
                   + _text("rejected", r.get("rejected")) + "</div></td></tr>")
    return "".join(out) + "</tbody></table>"


# ----------------------------------------------------------------------------- page
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:3px;margin-top:1.6em}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.gap,td.pd,td.rank{text-align:right;font-variant-numeric:tabular-nums}
td.own{outline:2px solid #333;outline-offset:-2px;font-weight:600}
table.matrix td{text-align:center}.heat{display:inline-block;min-width:3em;padding:1px 4px}
.na{color:#aaa}
.warn{background:#fff4e5;border:1px solid #f0b45a;border-radius:4px;padding:8px 14px 8px 2.2em}
.warn li{margin:.25em 0}.ok{background:#eef8ee;border:1px solid #9c9;border-radius:4px;
padding:8px 14px}
.note{color:#666;font-size:.9em}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.figs{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
tr.texts td{background:#fcfcfc;padding:6px}
.three{display:grid;grid-template-columns:1fr 1fr 1fr;gap:8px}
.txt .lab{font-size:.75em;text-transform:uppercase;color:#777;letter-spacing:.05em}
.txt .body{white-space:pre-wrap;max-height:11em;overflow:auto;font-size:.85em;
border:1px solid #eee;padding:4px;background:#fff}
code{background:#f4f4f4;padding:0 3px}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dl.kv dt{color:#555}
dl.kv dd{margin:0}
"""


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
         f"<h1>pdselect report: {esc(r['source'])}</h1>",
         '<section id="summary"><h2>Summary</h2>', _summary(r, cfg), "</section>"]
    P += _warnings_section(r)
    P += _proxies_section(r)
    P += _pd_section(figures)
    P += _conflict_section(r, figures)
    P += _length_section(s, figures)
    P += _coverage_section(s)
    P += _comparison_section(s)
    P += _examples_sections(s, aspects)
    P.append("</body></html>")
    return "\n".join(P)


def _warnings_section(r: dict) -> list[str]:
    warns = r.get("warnings", [])
    return ['<section id="warnings"><h2>Warnings</h2>',
            '<ul class="warn">' + "".join(f"<li>{esc(w)}</li>" for w in warns) + "</ul>"
            if warns else '<p class="ok">No warnings.</p>',
            "</section>"]


def _proxies_section(r: dict) -> list[str]:
    """Each aspect proxy's held-out accuracy with its 95% interval."""
    ci = r.get("proxy_ci95", {})
    rows = [[a, m.get("n_train"), m.get("n_val"), m.get("val_accuracy"),
             f"{num(ci.get(a, [None])[0])}\u2013{num(ci.get(a, [None, None])[1])}",
             m.get("length_corr_before"), m.get("length_corr_after")]
            for a, m in r["proxy"].get("aspects", {}).items()]
    return ['<section id="proxies"><h2>Proxy reward models</h2>',
            _table(["aspect", "train pairs", "held-out pairs", "held-out accuracy", "95% CI",
                    "reward-length r (rho=0)", "reward-length r (debiased)"], rows),
            '<p class="note">A proxy whose interval is not above 0.5 adds noise to PD.</p>',
            "</section>"]


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
            _table(["selector", "conflict AUC", "kept", "conflict rate of kept"],
                   [[m, v.get("auc"), v["n_selected"], v["conflict_rate"]]
                    for m, v in c.items() if m != "pool"]), "</section>"]


def _examples_sections(s: dict, aspects: list[str]) -> list[str]:
    """The top kept and the top dropped pairs, texts and per-aspect gaps."""
    ex = s.get("examples", {})
    return ['<section id="kept"><h2>Top kept pairs</h2>',
            '<p class="note">First in the selector\'s order. &Delta;n: each aspect\'s normalised '
            "proxy gap (chosen minus rejected, in [&minus;1, 1]); the framed cell is the pair's "
            "label aspect. Green: that aspect prefers the chosen response.</p>",
            _pairs(ex.get("kept", []), aspects, "kept"), "</section>",
            '<section id="dropped"><h2>Top dropped pairs</h2>',
            '<p class="note">Last in the selector\'s order (for PD: the most conflicting).</p>',
            _pairs(ex.get("dropped", []), aspects, "dropped"), "</section>"]
