"""report.html and the report's warnings and plots: sections present, numbers equal to the
run's tables, every user text escaped, warnings in report.md / report.html / the log, plots
with labelled colour bars, one colour per method and legends listing only what was drawn."""

from __future__ import annotations

import base64
import shutil
import html
import json
import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect.config import load_config
from pdselect.pipeline import run_pipeline
from pdselect.report.run_report import md_escape, selection_warnings
from pdselect.report.html import num, render_html
from pdselect.report.html_pairs import END_ROWS, NEAR_ROWS
from pdselect.report.html_style import SCRIPT
from pdselect.reward.diagnostics import interval_of

HOSTILE = "x|y*z_`<b>"  # an aspect name that would open HTML
EVIL = "<script>alert('pwn')</script> & \"quoted\""  # a prompt that would run a script


class Page(HTMLParser):
    """Sections (by id) -> tables -> rows -> cell texts; rows' data attributes; image sources."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list] = {}
        self.row_attrs: dict[str, list[dict]] = {}
        self.images: list[str] = []
        self._sec = self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._sec = a.get("id")
            self.sections[self._sec] = []
        elif tag == "table" and self._sec:
            self._table = []
            self.sections[self._sec].append(self._table)
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
            if "data-pair-id" in a:
                self.row_attrs.setdefault(self._sec, []).append(a)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "section":
            self._sec = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, section: str, i: int = 0) -> list[list[str]]:
        return self.sections[section][i]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    import logging

    d = tmp_path_factory.mktemp("html")
    data = write_tiny(d / "d.jsonl")
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    for r in rows:
        if r["q"].startswith("question 0:"):
            r["q"] = EVIL
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = d / "run"
    over = tiny_overrides(data, run_dir, "select.inspect_top=40", aspect=HOSTILE)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("pdselect").addHandler(handler)
    try:
        cfg = load_config(None, over)
        run_pipeline(cfg)
    finally:
        logging.getLogger("pdselect").removeHandler(handler)
    text = (run_dir / "report.html").read_text()
    return run_dir, cfg, text, Page(text), [r.getMessage() for r in records]


def test_sections_and_embedded_figures(hostile_run):
    run_dir, _, text, page, _ = hostile_run
    assert text.startswith("<!DOCTYPE html>")
    # one inline script, ours (sort/filter); no user text opens another
    assert text.count("<script") == 1 and f"<script>{SCRIPT}</script>" in text
    for sec in ("verdict", "summary", "warnings", "counts", "proxies", "pd", "conflict",
                "length", "coverage", "cutoff", "pairs", "kept", "dropped", "run"):
        assert sec in page.sections, sec
    assert list(page.sections)[0] == "verdict"  # the verdict comes first
    assert 'id="conflict-proxy"' in text and 'id="conflict-true"' in text
    pngs = [s for s in page.images if s.startswith("data:image/png;base64,")]
    assert len(pngs) == 4  # PD histogram, two conflict matrices, length shift
    for s in pngs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for f in ("pd_histogram.png", "conflict_proxy.png", "conflict_true.png", "length_shift.png"):
        assert (run_dir / "report" / f).stat().st_size > 1000, f  # saved in the run dir too
    assert "http://" not in text and "https://" not in text  # static: nothing fetched


def test_every_user_text_is_escaped(hostile_run):
    _, _, text, page, _ = hostile_run
    assert EVIL not in text and text.count("<script>") == 1 and HOSTILE not in text
    assert html.escape(EVIL, quote=True) in text and html.escape(HOSTILE, quote=True) in text
    # and the parsed page shows them as the literal text they are
    assert HOSTILE in [r[0] for r in page.table("proxies")[1:]]


def test_numbers_equal_the_run_tables(hostile_run):
    run_dir, cfg, _, page, _ = hostile_run
    rep = json.loads((run_dir / "report.json").read_text())
    aspects = rep["aggregate"]["aspects"]
    # proxies: accuracy and its 95% interval
    rows = {r[0]: r for r in page.table("proxies")[1:]}
    metrics = json.loads((run_dir / "proxy" / "metrics.json").read_text())["aspects"]
    for a, m in metrics.items():
        lo, hi = interval_of(m)
        assert rows[a][2] == num(m["n_val"]) and rows[a][3] == num(m["val_accuracy"])
        assert rows[a][4] == f"{num(lo)}\u2013{num(hi)}"
    # conflict matrix from the proxies, recomputed from the score table
    scores = pd.read_parquet(run_dir / "score" / "scores.parquet")
    mat = {r[0]: r[1:] for r in page.table("conflict", 0)[1:]}
    for i, k in enumerate(aspects):
        sub = scores[scores["aspect"] == k]
        for j, k2 in enumerate(aspects):
            want = "\u2014" if k == k2 else num(float((sub[f"gap__{k2}"] < 0).mean()), 2)
            assert mat[k][j] == want, (k, k2)
    # length shift, recomputed from the inspection table
    insp = pd.read_parquet(run_dir / "select" / "inspect.parquet")
    lt = {r[0]: r for r in page.table("length")[1:]}
    for name, part in (("pool", insp), ("kept", insp[insp["kept"]])):
        lc, lr = part["len_chosen"], part["len_rejected"]
        assert lt[name][1:] == [num(len(part)), num(float((lc > lr).mean())),
                                num(float(lc.mean())), num(float(lr.mean()))]
    # summary: kept / pool and the PD cut-off
    summary = page.table("summary") if page.sections["summary"] else None
    assert summary is None  # the summary is a definition list, not a table
    meta = json.loads((run_dir / "select" / "meta.json").read_text())
    assert f"{meta['n_selected']} of {meta['n_pool']} pool pairs" in hostile_run[2]
    assert f"&lt;= {meta['pd_cutoff']:.4f}" in hostile_run[2]
    # top kept pairs = the first kept rows in selector order; dropped = the last ones
    n = cfg.select.inspect_top
    kept_ids = [a["data-pair-id"] for a in page.row_attrs["kept"]]
    dropped_ids = [a["data-pair-id"] for a in page.row_attrs["dropped"]]
    assert kept_ids == insp[insp["kept"]]["pair_id"].head(n).tolist()
    assert dropped_ids == insp[~insp["kept"]]["pair_id"].tail(n).tolist()[::-1]
    pair_rows = [r for r in page.table("kept") if len(r) > 1][1:]
    by_id = insp.set_index("pair_id")
    for pid, r in zip(kept_ids, pair_rows):
        want = [num(int(by_id.at[pid, "rank"])), "\u2714 kept", by_id.at[pid, "aspect"],
                num(by_id.at[pid, "pd"])] + [_arrow(by_id.at[pid, f"norm__{a}"])
                                             + num(by_id.at[pid, f"norm__{a}"]) for a in aspects]
        assert r[:4 + len(aspects)] == want


def test_warnings_reach_markdown_html_and_log(hostile_run):
    run_dir, _, text, page, logged = hostile_run
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["warnings"], "the tiny run validates its proxies on < 30 pairs"
    md = (run_dir / "report.md").read_text()
    for w in rep["warnings"]:
        assert md_escape(w) in md
        assert html.escape(w, quote=True) in text
        assert any(w in m for m in logged), w
    assert any("on only" in w or "not better than chance" in w
               for w in rep["warnings"])


def _arrow(v) -> str:
    """The symbol a gap cell shows beside its number (meaning not by colour alone)."""
    return "\u25b2" if v > 0 else "\u25bc" if v < 0 else "\u25cf"


def test_verdict_counts_versions_and_unified_row_match_the_report(hostile_run):
    run_dir, _, text, page, _ = hostile_run
    rep = json.loads((run_dir / "report.json").read_text())
    v = rep["verdict"]
    assert html.escape(v["text"], quote=True) in text
    assert f"(confidence: {v['confidence']})" in text
    md = (run_dir / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Warnings")  # first in report.md too
    counts = {r[0]: r for r in page.table("counts")[1:]}
    assert counts["select"][1] == num(rep["selection"]["n_selected"])
    assert counts["aggregate"][1] == num(rep["aggregate"]["n_pairs"])
    reasons = {r[2]: r[3] for r in page.table("counts", 1)[1:]}
    assert reasons == {k: num(n) for st in ("ingest", "aggregate")
                       for k, n in rep[st]["rejects"].items()}
    times = {r[0]: r[1] for r in page.table("run")[1:]}
    assert times == {k: num(s["wall_seconds"]) for k, s in rep["manifest"]["stages"].items()}
    versions = {r[0]: r[1] for r in page.table("run", 1)[1:]}
    assert versions["pdselect"] == rep["manifest"]["environment"]["versions"]["pdselect"]
    assert f"| pdselect | {md_escape(versions['pdselect'])} |" in md  # and in report.md
    proxies = [r[0] for r in page.table("proxies")[1:]]
    assert ("(unified, margin baseline)" in proxies) == ("unified" in rep["proxy"])
    weights = {r[0]: r[5] for r in page.table("proxies")[1:]}
    for a, w in rep["pd_weights"]["weights"].items():
        assert weights[a] == num(w)


def test_review_table_both_sides_of_the_cut_off(hostile_run):
    run_dir, _, text, page, _ = hostile_run
    insp = pd.read_parquet(run_dir / "select" / "inspect.parquet").sort_values("rank")
    rows = page.row_attrs["pairs"]
    kept, dropped = insp[insp["kept"]], insp[~insp["kept"]]
    want = set(kept["pair_id"].tail(NEAR_ROWS)) | set(dropped["pair_id"].head(NEAR_ROWS)) \
        | set(insp["pair_id"].head(END_ROWS)) | set(insp["pair_id"].tail(END_ROWS))
    ids = [a["data-pair-id"] for a in rows]
    assert set(ids) == want and ids == [p for p in insp["pair_id"] if p in want]  # rank order
    assert (f"Showing {len(want)} of {len(insp)} pool pairs" in text if len(want) < len(insp)
            else f"Showing all {len(insp)} pool pairs" in text)
    assert {a["data-kept"] for a in rows} == {"kept", "dropped"}
    table = page.table("pairs")
    assert table[0][:4] == ["rank", "kept", "aspect", "PD"]
    assert all(r[1] in ("\u2714 kept", "\u2716 dropped") for r in table[1:])
    # the pairs with texts on both sides of the cut-off
    near_k = [a["data-pair-id"] for a in page.row_attrs["cutoff"]]
    assert near_k[:5] == kept["pair_id"].tail(5).tolist()
    assert near_k[5:] == dropped["pair_id"].head(5).tolist()
    # the page's filter controls and sortable headers
    for needle in ('id="pair-filter"', 'id="pair-kept"', 'id="pair-aspect"', "aria-sort"):
        assert needle in text


def test_palette_is_colour_blind_safe_and_not_colour_alone(hostile_run):
    _, _, text, _, _ = hostile_run
    assert "214,39,40" not in text and "44,160,44" not in text  # the old red / green
    assert "0,114,178" in text and "213,94,0" in text           # Okabe-Ito blue, vermillion
    assert 'class="arr"' in text and "\u2714 kept" in text


def _report(**over):
    base = {"proxy": {"aspects": {"a": {"val_accuracy": 0.9, "n_val": 200}}},
            "conflict_level_drop": None,
            "selection": {"method": "pd", "pd_cutoff": -1.0, "n_kept_pd_positive": 0,
                          "length_before": {"share_chosen_longer": 0.5, "mean_len_chosen": 100},
                          "length_after": {"share_chosen_longer": 0.5, "mean_len_chosen": 100}}}
    for k, v in over.items():
        if k in ("pd_cutoff", "n_kept_pd_positive", "length_after"):
            base["selection"][k] = v
        else:
            base[k] = v
    return base


def test_selection_warnings_each_rule():
    assert selection_warnings(_report()) == []
    few = _report(proxy={"aspects": {"a": {"val_accuracy": 0.95, "n_val": 20}}})
    assert "'a' on only 20 pairs" in " ".join(selection_warnings(few))
    chance = _report(proxy={"aspects": {"a": {"val_accuracy": 0.5, "n_val": 400,
                                              "val_accuracy_ci95": [0.45, 0.55]}}})
    assert "not better than chance" in " ".join(selection_warnings(chance))
    drop = {"n_dropped": 60, "n_before": 100, "share": 0.6}
    assert "dropped 60 of 100" in " ".join(selection_warnings(_report(conflict_level_drop=drop)))
    assert selection_warnings(_report(conflict_level_drop={**drop, "share": 0.4})) == []
    longer = _report(length_after={"share_chosen_longer": 0.6, "mean_len_chosen": 100})
    assert "length bias rises" in " ".join(selection_warnings(longer))
    longer = _report(length_after={"share_chosen_longer": 0.5, "mean_len_chosen": 120})
    assert "length bias rises" in " ".join(selection_warnings(longer))
    assert selection_warnings(_report(length_after={"share_chosen_longer": 0.54,
                                                    "mean_len_chosen": 109})) == []
    cut = _report(pd_cutoff=0.25, n_kept_pd_positive=7)
    assert "cut-off is 0.2500 > 0: 7 kept pairs" in " ".join(selection_warnings(cut))


def test_holdout_from_aggregate_meta_is_shown_escaped(hostile_run):
    run_dir, cfg, _, _, _ = hostile_run
    rep = json.loads((run_dir / "report.json").read_text())
    rep["holdout"] = "30% of inputs <held out>"
    out = render_html(rep, cfg)
    assert "30% of inputs &lt;held out&gt;" in out
    rep["holdout"] = None
    assert "evaluation hold-out" in render_html(rep, cfg)
    assert "Figure not drawn" in out  # no figures passed: the page says so, tables remain


# ----------------------------------------------------------------------------- plots
@pytest.fixture
def kept_figures(monkeypatch):
    """Figures the plot functions close, kept open for inspection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    yield figs
    for f in figs:
        matplotlib.pyplot.figure(f.number)
    matplotlib.pyplot.close("all")


def _summary():
    rows = []
    for ds in ("d1", "d2"):
        for m in ("ALL", "RAND", "PD", "PD-rati"):
            for lv in ("natural", "0.1"):
                for b in ([1.0] if m == "ALL" else [0.1, 0.3]):
                    v = np.nan if (ds == "d2" and m == "PD-rati") else 0.6
                    rows.append({"dataset": ds, "conflict": lv, "method": m, "budget": b,
                                 "auc_mean": v, "auc_std": 0.01,
                                 "probe_l2=0.01_mean": v, "probe_l2=0.01_std": 0.01})
    return pd.DataFrame(rows)


def test_experiment_plots_legend_only_what_is_drawn(kept_figures, tmp_path):
    from pdselect.report import plots

    s = _summary()
    s.loc[s["method"] == "PD-rati", "auc_mean"] = np.nan  # PD-rati drawn nowhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "No artists with labels found to put in legend"
        plots.conflict_robustness(s, tmp_path, "auc")
        plots.budget_curve(s, tmp_path, "probe_l2=0.01")
    fig = kept_figures[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["ALL", "RAND", "PD"]  # one entry per drawn method, PD-rati left out
    ax = fig.axes[0]
    assert ax.get_ylabel() == "conflict-detection AUC (train pool)"
    assert "conflict level" in ax.get_xlabel()
    colours = {c.get_label(): c.lines[0].get_color() for a in fig.axes for c in a.containers}
    assert colours == {m: plots.METHOD_COLOURS[m] for m in ("ALL", "RAND", "PD")}
    budget = kept_figures[1]
    assert [t.get_text() for t in budget.legends[0].get_texts()] == ["ALL", "RAND", "PD-rati",
                                                                      "PD"]
    assert budget.axes[0].get_ylabel() == "held-out probe accuracy (L2 = 0.01)"
    assert (tmp_path / "conflict_robustness_auc.png").stat().st_size > 1000


def test_no_legend_when_nothing_is_drawn(kept_figures, tmp_path):
    from pdselect.report import plots

    s = _summary().assign(auc_mean=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.conflict_robustness(s, tmp_path, "auc")
    assert kept_figures[0].legends == []


def test_method_colours_are_distinct():
    from pdselect.report import plots
    from pdselect.report.plots import METHOD_ORDER

    colours = [plots.method_colour(m) for m in METHOD_ORDER]
    assert len(set(colours)) == len(METHOD_ORDER)


def test_conflict_matrix_colour_bar_is_labelled(kept_figures, tmp_path):
    from pdselect.report import plots

    m = pd.DataFrame([[np.nan, 0.2], [0.3, np.nan]], index=["a", "b"], columns=["a", "b"])
    plots.aspect_conflict_matrix(m, tmp_path, "t", "m.png")
    fig = kept_figures[0]
    cbar_ax = fig.axes[1]
    assert "rates the other way" in cbar_ax.get_ylabel()
    assert fig.axes[0].get_xlabel() == "other aspect k'"


def test_run_pd_histogram_legend_and_cutoff(kept_figures, tmp_path):
    from pdselect.report import plots

    pdv = np.linspace(-2, 2, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.run_pd_histogram(pdv, pdv <= -1, -1.0, tmp_path)
    ax = kept_figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["kept", "dropped", "cut-off -1.000"]
    assert ax.get_xlabel().startswith("PD") and ax.get_ylabel() == "pairs"
    assert len(kept_figures[0].axes) == 1  # no overall label: one panel


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="no headless chromium to run the page's script")
def test_review_script_sorts_and_filters_in_a_browser(hostile_run, tmp_path):
    """The inline script, run by a real headless browser: a header click sorts, the
    kept/dropped select and the text box filter, the count follows."""
    import subprocess

    run_dir, _, text, _, _ = hostile_run
    probe = ("<script>(function(){var t=document.getElementById('pair-table');"
             "var hs=t.tHead.rows[0].cells;hs[3].click();hs[3].click();"
             "var first=t.tBodies[0].rows[0].cells[3].getAttribute('data-v')||"
             "t.tBodies[0].rows[0].cells[3].textContent;"
             "var k=document.getElementById('pair-kept');k.value='dropped';"
             "k.dispatchEvent(new Event('change'));"
             "var n=[].filter.call(t.tBodies[0].rows,function(r){return !r.hidden}).length;"
             "var o=document.createElement('pre');o.id='probe';o.textContent=JSON.stringify("
             "{sort:hs[3].getAttribute('aria-sort'),first:first,dropped:n,"
             "count:document.getElementById('pair-count').textContent});"
             "document.body.appendChild(o);})();</script></body>")
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", probe))
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    got = json.loads(html.unescape(dom.split('<pre id="probe">', 1)[1].split("</pre>")[0]))
    insp = pd.read_parquet(run_dir / "select" / "inspect.parquet")
    assert got["sort"] == "descending"
    assert got["first"] == num(insp["pd"].max())  # PD column sorted, largest first
    insp = insp.sort_values("rank")
    kept, dropped = insp[insp["kept"]], insp[~insp["kept"]]
    shown = set(kept["pair_id"].tail(NEAR_ROWS)) | set(dropped["pair_id"].head(NEAR_ROWS)) \
        | set(insp["pair_id"].head(END_ROWS)) | set(insp["pair_id"].tail(END_ROWS))
    assert got["dropped"] == len(shown & set(dropped["pair_id"])) > 0
    assert got["count"] == str(got["dropped"])


def test_review_rows_cap_a_large_pool(tmp_path):
    """2,000 pairs, 30% kept: 250 kept + 250 dropped at the cut-off, first and last 50."""
    from pdselect.report.html_pairs import review_rows, review_table

    n, n_kept = 2000, 600
    rng = np.random.default_rng(0)
    ins = pd.DataFrame({"rank": np.arange(n), "kept": np.arange(n) < n_kept,
                        "pair_id": [f"p{i:04d}" for i in range(n)], "input_id": "x",
                        "aspect": rng.choice(["a", "b"], n), "pd": np.sort(rng.normal(size=n)),
                        "norm__a": rng.uniform(-1, 1, n), "norm__b": rng.uniform(-1, 1, n),
                        "len_chosen": 10, "len_rejected": 12, "prompt": "q",
                        "chosen": "c" * 200, "rejected": "r"})
    (tmp_path / "select").mkdir()
    ins.to_parquet(tmp_path / "select" / "inspect.parquet")
    rows, n_pool = review_rows(tmp_path)
    ranks = rows["rank"].tolist()
    want = sorted(set(range(50)) | set(range(n_kept - NEAR_ROWS, n_kept + NEAR_ROWS))
                  | set(range(n - 50, n)))
    assert n_pool == n and ranks == want and len(rows) == 600
    page = review_table(rows, n_pool, ["a", "b"])
    assert "Showing 600 of 2000 pool pairs" in page
    assert ">" + "c" * 70 + "</td>" in page and 'title="' + "c" * 200 in page  # full on hover
