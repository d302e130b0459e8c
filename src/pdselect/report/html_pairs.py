"""report.html's pair views: the pairs nearest the cut-off and at the ends (texts and gaps),
and one sortable, filterable table of kept and dropped pairs (a small self-contained script;
the rows are plain HTML, so the page reads without it).

Colours follow the Okabe-Ito palette (safe for colour-blind readers) and never carry meaning
alone: a gap's sign is in its number and an arrow, kept/dropped in a word and a symbol.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

# Okabe & Ito (2008): blue = the aspect prefers the chosen response, vermillion = the other
BLUE, VERMILLION, ORANGE = "0,114,178", "213,94,0", "230,159,0"
TEXT_SHOWN = 600    # characters of each text shown before "more"
SNIPPET = 70        # characters of chosen / rejected in the review table
NEAR_ROWS = 250     # review table: this many kept and this many dropped pairs at the cut-off
END_ROWS = 50       # ... plus the first and the last this many in selector order
KEPT_MARK = {True: "\u2714 kept", False: "\u2716 dropped"}


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


def gap_cell(v, own: bool) -> str:
    """A normalised gap: number, arrow (which response the aspect prefers) and a tint."""
    cls = "gap own" if own else "gap"
    if v is None or not math.isfinite(v):
        return f'<td class="{cls}" data-v="">n/a</td>'
    colour, arrow = (BLUE, "\u25b2") if v > 0 else (VERMILLION, "\u25bc") if v < 0 else \
        (BLUE, "\u25cf")
    return (f'<td class="{cls}" data-v="{v:.6g}" style="background:rgba({colour},'
            f'{0.55 * min(1.0, abs(v)):.2f})"><span class="arr">{arrow}</span>{num(v)}</td>')


def _text(label: str, t) -> str:
    t = "" if t is None else str(t)
    body = esc(t[:TEXT_SHOWN])
    if len(t) > TEXT_SHOWN:
        body += (f'<details><summary>&hellip; {len(t) - TEXT_SHOWN} more characters'
                 f'</summary>{esc(t[TEXT_SHOWN:])}</details>')
    return (f'<div class="txt"><div class="lab">{esc(label)}</div>'
            f'<div class="body">{body}</div></div>')


def pairs_table(rows: list[dict], aspects: list[str], section: str) -> str:
    """Pairs with their texts under each row (the examples and the near-cut-off pairs)."""
    if not rows:
        return '<p class="note">None.</p>'
    head = ["rank", "kept", "aspect", "PD", *[f"Δn {a}" for a in aspects], "len chosen",
            "len rejected"]
    out = [f'<table class="pairs" data-section="{esc(section)}"><thead><tr>'
           + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        kept = bool(r.get("kept"))
        cells = [f'<td class="rank">{num(r["rank"])}</td>',
                 f'<td class="{"k" if kept else "d"}">{KEPT_MARK[kept]}</td>',
                 f"<td>{esc(r['aspect'])}</td>", f'<td class="pd">{num(r["pd"])}</td>']
        cells += [gap_cell(r.get(f"norm__{a}"), a == r["aspect"]) for a in aspects]
        cells += [f"<td>{num(r['len_chosen'])}</td>", f"<td>{num(r['len_rejected'])}</td>"]
        out.append(f'<tr class="pair" data-pair-id="{esc(r["pair_id"])}">' + "".join(cells)
                   + "</tr>")
        out.append(f'<tr class="texts"><td colspan="{len(head)}"><div class="three">'
                   + _text("prompt", r.get("prompt")) + _text("chosen", r.get("chosen"))
                   + _text("rejected", r.get("rejected")) + "</div></td></tr>")
    return "".join(out) + "</tbody></table>"


# ----------------------------------------------------------------------------- review table
def review_rows(root: Path, near: int = NEAR_ROWS, ends: int = END_ROWS) -> tuple[pd.DataFrame,
                                                                                    int]:
    """(rows to embed, pool size): the ``near`` kept pairs last in selector order and the
    ``near`` dropped pairs first in it (both sides of the cut-off), plus the first and last
    ``ends`` pairs, in rank order, with the start of their chosen / rejected texts."""
    from ..select.export import inspect_texts, load_inspect

    ins = load_inspect(root, texts=False).sort_values("rank", kind="stable")
    kept, dropped = ins[ins["kept"]], ins[~ins["kept"]]
    parts = [kept.tail(near), dropped.head(near), ins.head(ends), ins.tail(ends)]
    rows = pd.concat(parts).drop_duplicates("pair_id").sort_values("rank", kind="stable")
    texts = inspect_texts(root, rows["pair_id"]).set_index("pair_id")
    rows = rows.join(texts[["chosen", "rejected"]], on="pair_id")
    return rows, len(ins)


def review_table(rows: pd.DataFrame, n_pool: int, aspects: list[str]) -> str:
    """The sortable, filterable table (section body) with its controls and count line."""
    cols = [("rank", "rank"), ("kept", "kept"), ("aspect", "aspect"), ("pd", "PD")]
    if "margin" in rows.columns:
        cols.append(("margin", "margin"))
    cols += [(f"norm__{a}", f"Δn {a}") for a in aspects if f"norm__{a}" in rows.columns]
    cols += [("len_chosen", "len chosen"), ("len_rejected", "len rejected"),
             ("chosen", "chosen (start)"), ("rejected", "rejected (start)")]
    body = []
    for r in rows.to_dict("records"):
        kept = bool(r["kept"])
        cells = []
        for c, _ in cols:
            v = r.get(c)
            if c == "kept":
                cells.append(f'<td class="{"k" if kept else "d"}" data-v="{int(kept)}">'
                             f"{KEPT_MARK[kept]}</td>")
            elif c.startswith("norm__"):
                cells.append(gap_cell(v, c == f"norm__{r['aspect']}"))
            elif c in ("chosen", "rejected", "aspect"):
                t = "" if v is None else str(v)
                cells.append(f'<td class="t" title="{esc(t[:400])}">{esc(t[:SNIPPET])}</td>')
            else:
                cells.append(f'<td class="n">{num(v)}</td>')
        body.append(f'<tr data-kept="{"kept" if kept else "dropped"}" data-aspect='
                    f'"{esc(r["aspect"])}" data-pair-id="{esc(r["pair_id"])}">'
                    + "".join(cells) + "</tr>")
    options = "".join(f'<option value="{esc(a)}">{esc(a)}</option>'
                      for a in sorted(rows["aspect"].astype(str).unique()))
    head = "".join(f'<th scope="col" tabindex="0">{esc(h)}</th>' for _, h in cols)
    which = (f"all {n_pool} pool pairs" if len(rows) == n_pool else
             f"{len(rows)} of {n_pool} pool pairs: the {NEAR_ROWS} kept and {NEAR_ROWS} dropped "
             f"pairs nearest the cut-off and the first and last {END_ROWS} in selector order")
    return (f'<p class="note">Showing {which}. Click a column to sort; every pair is in '
            "select/inspect.parquet.</p>"
            '<div class="controls"><label>filter <input id="pair-filter" type="search" '
            'placeholder="text, aspect, pair id"></label> <label>show <select id="pair-kept">'
            '<option value="">kept and dropped</option><option value="kept">kept</option>'
            '<option value="dropped">dropped</option></select></label> <label>aspect '
            f'<select id="pair-aspect"><option value="">all</option>{options}</select></label>'
            ' <span class="note"><span id="pair-count">' + str(len(rows)) + "</span> rows "
            "shown</span></div>"
            f'<table id="pair-table" class="review"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>")
