"""Report: what every stage did, and how good the selection is when the overall label is known.

Writes ``report.json`` (everything, machine-readable) and ``report.md`` (the same for people).
All numbers are computed here from the run directory's artifacts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..run.artifacts import RunDir, read_json
from ..config import RunConfig
from .evaluate import selection_metrics


def _length_stats(pairs: pd.DataFrame) -> dict:
    from ..select.export import length_stats

    return length_stats(pairs)


# a warning when the kept pairs' chosen responses are longer than the pool's by more than this
LENGTH_SHARE_RISE = 0.05   # share of pairs with the chosen response longer (absolute)
LENGTH_MEAN_RISE = 0.10    # mean chosen length (relative)
CONFLICT_DROP_WARN = 0.5   # conflict-level subsampling dropping more than this share of the pool
_CONFLICT_REASON = "conflict-level subsampling"


def conflict_matrix(pairs: pd.DataFrame, aspects: list[str], prefix: str) -> dict | None:
    """{k: {k': share}}: among pairs labelled k where aspect k' is known, the share that k'
    rates the other way (``<prefix><k'>`` < 0: a proxy's reward gap, or a true rating gap).
    None when no ``prefix`` column exists. The diagonal is left out (None)."""
    if not any(f"{prefix}{a}" in pairs.columns for a in aspects):
        return None
    out: dict[str, dict] = {}
    for k in aspects:
        sub = pairs[pairs["aspect"] == k]
        row = {}
        for k2 in aspects:
            col = f"{prefix}{k2}"
            vals = sub[col].to_numpy(np.float64) if col in sub.columns else np.array([])
            vals = vals[np.isfinite(vals)]
            row[k2] = None if k2 == k or len(vals) == 0 else float((vals < 0).mean())
        out[k] = row
    return out


def _examples(inspect: pd.DataFrame, n: int, root) -> dict:
    """The first ``n`` kept pairs in selector order and the last ``n`` dropped ones (for PD:
    the most agreeing kept and the most conflicting dropped), texts and per-aspect gaps.
    ``inspect`` has no texts (load_inspect(texts=False)): only these pairs' texts are read."""
    from ..select.export import TEXT_COLUMNS, inspect_texts

    kept = inspect[inspect["kept"]].head(n)
    dropped = inspect[~inspect["kept"]].tail(n).iloc[::-1]
    texts = inspect_texts(root, pd.concat([kept["pair_id"], dropped["pair_id"]])).set_index(
        "pair_id")
    cols = [c for c in inspect.columns if c not in ("input_id",)] + TEXT_COLUMNS
    return {name: part.join(texts, on="pair_id")[cols].to_dict("records")
            for name, part in (("kept", kept), ("dropped", dropped))}


def selection_warnings(report: dict) -> list[str]:
    """Sentences for report.md, report.html and the log: weak proxies, a conflict level that
    drops most of the pool, a selection that favours longer chosen responses, a PD cut-off
    above 0."""
    from ..reward.diagnostics import proxy_warnings

    out = list(proxy_warnings(report["proxy"].get("aspects", {})))
    drop = report.get("conflict_level_drop")
    if drop and drop["share"] > CONFLICT_DROP_WARN:
        out.append(f"the conflict level dropped {drop['n_dropped']} of {drop['n_before']} train "
                   f"pairs ({drop['share']:.0%} of the pool, more than "
                   f"{CONFLICT_DROP_WARN:.0%}): the selection runs on a much smaller pool.")
    s = report["selection"]
    lb, la = s["length_before"], s["length_after"]
    if lb and la:
        rise_share = la["share_chosen_longer"] - lb["share_chosen_longer"]
        rise_mean = la["mean_len_chosen"] / max(lb["mean_len_chosen"], 1e-9) - 1
        if rise_share > LENGTH_SHARE_RISE or rise_mean > LENGTH_MEAN_RISE:
            out.append(f"length bias rises in the selection: chosen longer in "
                       f"{la['share_chosen_longer']:.0%} of kept pairs vs "
                       f"{lb['share_chosen_longer']:.0%} of the pool; mean chosen length "
                       f"{la['mean_len_chosen']:.0f} vs {lb['mean_len_chosen']:.0f} characters. "
                       "DPO on it may learn 'longer is better'.")
    cut = s.get("pd_cutoff")
    if cut is not None and s["method"] == "pd" and cut > 0:
        n_pos = s.get("n_kept_pd_positive", 0)
        out.append(f"the PD cut-off is {cut:.4f} > 0: {n_pos} kept pairs have PD > 0 (the other "
                   "aspects on balance rate them the other way); a smaller budget keeps only "
                   "pairs the other aspects agree with.")
    return out


def _selection_part(cfg: RunConfig, run: RunDir, train: pd.DataFrame) -> dict:
    from ..select.export import load_inspect, pd_cutoff

    sel = pd.read_parquet(run.root / "select" / "selection.parquet")
    inspect = load_inspect(run.root, texts=False)
    select_meta = read_json(run.root / "select" / "meta.json")
    chosen = train.merge(sel.loc[sel["selected"], ["pair_id"]], on="pair_id")
    kept_pd = inspect.loc[inspect["kept"], "pd"]
    part = {"method": cfg.select.method, "n_pool": len(sel),
            "n_selected": int(sel["selected"].sum()),
            "coverage_before": train["aspect"].value_counts().sort_index().to_dict(),
            "coverage_after": chosen["aspect"].value_counts().sort_index().to_dict(),
            "length_before": _length_stats(train), "length_after": _length_stats(chosen),
            "pd_cutoff": pd_cutoff(inspect, cfg.select.method),
            "n_kept_pd_positive": int((kept_pd > 0).sum()),
            "pd_pool": _describe(inspect["pd"]), "pd_kept": _describe(kept_pd),
            "dataset": select_meta.get("dataset"), "chat_format": select_meta.get("chat_format"),
            "examples": _examples(inspect, cfg.select.inspect_top, run.root)}
    if "h_agrees_overall" in train.columns and train["h_agrees_overall"].notna().any():
        from ..run.stage_tables import load_score_pool

        pool = load_score_pool(run).merge(train[["pair_id", "h_agrees_overall"]], on="pair_id")
        methods = list(dict.fromkeys([cfg.select.method] + list(cfg.select.compare)))
        part["comparison"] = selection_metrics(
            pool, methods, cfg.select.budget, cfg.select.budget_count, cfg.seed,
            "aspect" if cfg.select.stratify_by_aspect else None)
    return part


def _describe(x: pd.Series) -> dict:
    x = x.to_numpy(np.float64)
    if len(x) == 0:
        return {}
    return {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max())}


def _proxy_intervals(proxy: dict) -> dict:
    from ..reward.diagnostics import interval_of

    return {a: list(interval_of(m)) for a, m in proxy.get("aspects", {}).items()}


def numeric_pairs(root, columns: list[str] | None = None) -> pd.DataFrame:
    """The aggregate stage's pair table without its texts (the report never shows them from
    here; examples come from the inspection table): ``columns`` of it, or all but the texts."""
    import pyarrow.parquet as pq

    path = root / "aggregate" / "pairs.parquet"
    names = pq.ParquetFile(path).schema_arrow.names
    keep = [c for c in names if c not in ("input", "chosen", "rejected")]
    return pd.read_parquet(path, columns=[c for c in keep if columns is None or c in columns])


def build_report(cfg: RunConfig, run: RunDir) -> tuple[dict, str]:
    from ..data.schema import DELTA_PREFIX

    root = run.root
    ingest = read_json(root / "ingest" / "meta.json")
    agg = read_json(root / "aggregate" / "meta.json")
    proxy = read_json(root / "proxy" / "metrics.json")
    score = read_json(root / "score" / "meta.json")
    pairs = numeric_pairs(root)
    train = pairs[pairs["split"] == "train"]
    scores = pd.read_parquet(root / "score" / "scores.parquet")
    aspects = list(agg["aspects"])
    dropped = sum(n for r, n in agg.get("rejects", {}).items() if r.startswith(_CONFLICT_REASON))
    report = {"run_dir": str(root), "seed": cfg.seed, "source": ingest["source"],
              "ingest": ingest, "aggregate": agg, "proxy": proxy, "score": score,
              "proxy_ci95": _proxy_intervals(proxy),
              "holdout": agg.get("holdout"),
              "conflict_level": cfg.aggregate.conflict_level,
              "conflict_level_drop": ({"n_dropped": int(dropped),
                                       "n_before": int(dropped + agg["n_train"]),
                                       "share": dropped / max(1, dropped + agg["n_train"])}
                                      if dropped else None),
              "conflict_matrix": {
                  "proxy": conflict_matrix(scores, aspects, "gap__"),
                  "true": conflict_matrix(train, aspects, DELTA_PREFIX)},
              "selection": _selection_part(cfg, run, train),
              "ingest_counts": dict(zip(("dropped", "ratings_rejected"),
                                        split_ingest_rejects(ingest["rejects"]))),
              "manifest": read_json(root / "manifest.json")}
    report["warnings"] = selection_warnings(report)
    return report, render_markdown(report, cfg)


# ----------------------------------------------------------------------------- markdown
_MD_SPECIAL = "\\`*_[]<>|~"


def md_escape(text) -> str:
    """``text`` as literal Markdown inline text: user labels (aspect names, file names, reject
    reasons, paths) cannot open emphasis, code, HTML, links or table cells, nor break a line."""
    text = " ".join(str(text).splitlines()) if text is not None else ""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in text)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return md_escape(v)


# ingest reasons that reject one RATING (the response is kept, that aspect unrated); every
# other ingest reason drops the record or response (data/rows.py)
_RATING_REASON_PREFIX = "rating "


def split_ingest_rejects(rejects: dict[str, int]) -> tuple[int, int]:
    """(records/responses dropped, ratings rejected) from ingest's reject counts."""
    ratings = sum(n for r, n in rejects.items() if r.startswith(_RATING_REASON_PREFIX))
    return sum(rejects.values()) - ratings, ratings


def _ci(lo_hi) -> str:
    lo, hi = lo_hi
    return "n/a" if not (math.isfinite(lo) and math.isfinite(hi)) else f"{lo:.3f}-{hi:.3f}"


def _holdout_line(r: dict) -> str:
    """Whether inputs were held out for evaluation (aggregate/meta.json's ``holdout`` when the
    aggregate stage records it; else the test split's size)."""
    agg = r["aggregate"]
    h = r.get("holdout")
    n = (f"{agg.get('n_test', 0)} of {agg.get('n_pairs', 0)} pairs are held out (test split, "
         "never selected)" if agg.get("n_test") else "no pair is held out: selection sees all")
    if h is None:
        return f"Evaluation hold-out: {n}."
    if isinstance(h, dict):
        h = ", ".join(f"{k}={v}" for k, v in h.items())
    elif isinstance(h, bool):
        h = "yes" if h else "no"
    return f"Evaluation hold-out: {md_escape(h)}; {n}."


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out + [""]


def render_markdown(r: dict, cfg: RunConfig) -> str:
    """report.md: the ``report`` dict of :func:`build_report`, one helper per section."""
    L = _md_summary(r, cfg)
    L += _md_warnings(r)
    L += _md_counts(r)
    L += _md_drops(r)
    L += _md_proxies(r)
    L += _md_conflict(r)
    s = r["selection"]
    L += _md_selection(s)
    L += _md_comparison(s)
    L += _md_stage_times(r)
    return "\n".join(L)


def _md_summary(r: dict, cfg: RunConfig) -> list[str]:
    """Title, run line, PD cut-off, the TRL dataset folder and the hold-out line."""
    L = [f"# pdselect report: {md_escape(r['source'])}", "",
         f"Run {md_escape(r['run_dir'])}, seed {r['seed']}, selector "
         f"**{md_escape(cfg.select.method)}**, budget "
         + (f"{cfg.select.budget_count} pairs" if cfg.select.budget_count
            else f"{cfg.select.budget:.0%}") + ".", ""]
    s = r["selection"]
    if s.get("pd_cutoff") is not None:
        L += [f"PD cut-off: kept pairs have PD {'<=' if s['method'] == 'pd' else '>='} "
              f"{s['pd_cutoff']:.4f} ({s.get('n_kept_pd_positive', 0)} kept pairs with PD > 0).",
              ""]
    if s.get("dataset"):
        L += [f"TRL dataset ({md_escape(s.get('chat_format'))} format): "
              f"{md_escape(s['dataset'])} (`load_dataset` on the folder; every pool pair with "
              "its gaps, PD, rank and kept flag: select/inspect.parquet; figures: report.html).",
              ""]
    return L + [_holdout_line(r), ""]


def _md_warnings(r: dict) -> list[str]:
    L = ["## Warnings", ""]
    L += [f"- {md_escape(w)}" for w in r.get("warnings", [])] or ["None."]
    return L + [""]


def _md_counts(r: dict) -> list[str]:
    """What each stage kept and dropped, one row per stage."""
    ing, agg = r["ingest"], r["aggregate"]
    dropped, ratings = split_ingest_rejects(ing["rejects"])
    what = "responses" if ing["kind"] == "rated" else "pairs"
    rows = [["ingest", ing.get("n_responses", ing.get("n_pairs")), what,
             f"{dropped} records/{what} dropped, {ratings} ratings rejected (response kept)"],
            ["aggregate", agg["n_pairs"], f"pairs ({agg['n_train']} train / {agg['n_test']} test)",
             f"{sum(agg['rejects'].values())} pairs dropped"],
            ["select", r["selection"]["n_selected"], f"of {r['selection']['n_pool']} train pairs",
             f"{r['selection']['n_pool'] - r['selection']['n_selected']} pairs not selected"]]
    return ["## Counts per stage", ""] + _table(["stage", "kept", "what", "dropped or rejected"],
                                                rows)


def _reject_kind(stage: str, reason: str, ingest_kind: str) -> str:
    """What a reject reason of ``stage`` removed: a pair, a rating, a record or a response."""
    if stage == "aggregate":
        return "pair dropped"
    if reason.startswith(_RATING_REASON_PREFIX):
        return "rating rejected (response kept)"
    return "record dropped" if ingest_kind == "pairs" else "response dropped"


def _md_drops(r: dict) -> list[str]:
    """Ingest's and aggregate's reject counts by reason; nothing when there are none."""
    drops = [[st, _reject_kind(st, reason, r["ingest"]["kind"]), reason, n]
             for st in ("ingest", "aggregate") for reason, n in r[st]["rejects"].items()]
    if not drops:
        return []
    return (["Dropped or set aside, by reason (details in each stage's rejects.jsonl):", ""]
            + _table(["stage", "what", "reason", "count"], drops))


def _md_proxy_row(name: str, m: dict, interval_of) -> list:
    return [name, m.get("n_train"), m.get("n_val"), m.get("val_accuracy"),
            _ci(interval_of(m)), m.get("length_corr_before"), m.get("length_corr_after")]


def _md_proxies(r: dict) -> list[str]:
    """Each aspect proxy's held-out accuracy (and the unified margin model's, when trained)."""
    from ..reward.diagnostics import interval_of

    rows = [_md_proxy_row(a, m, interval_of) for a, m in r["proxy"]["aspects"].items()]
    if "unified" in r["proxy"]:
        m = next(iter(r["proxy"]["unified"].values()))
        rows.append(_md_proxy_row("(unified, margin baseline)", m, interval_of))
    return ["## Proxy reward models", ""] + _table(
        ["aspect", "train pairs", "val pairs", "held-out accuracy", "95% CI",
         "reward-length r (rho=0)", "reward-length r (debiased)"], rows)


def _md_conflict(r: dict) -> list[str]:
    """The aspect conflict matrices, from the proxies and from the true ratings when known."""
    L = []
    for key, what in (("proxy", "the proxies' reward gaps"), ("true", "the true ratings")):
        m = r.get("conflict_matrix", {}).get(key)
        if m:
            names = list(m)
            L += [f"Aspect conflict matrix from {what}: share of pairs labelled by the row's "
                  "aspect that the column's aspect rates the other way.", ""]
            L += _table(["label aspect (row) / other aspect", *[md_escape(a) for a in names]],
                        [[a, *[m[a][b] for b in names]] for a in names])
    return L


def _md_selection(s: dict) -> list[str]:
    """Per-aspect coverage and the length statistics, pool vs selected."""
    L = ["## Selection", "", "Per-aspect coverage:", ""]
    aspects = sorted(set(s["coverage_before"]) | set(s["coverage_after"]))
    L += _table(["aspect", "pool", "selected", "share kept"],
                [[a, s["coverage_before"].get(a, 0), s["coverage_after"].get(a, 0),
                  s["coverage_after"].get(a, 0) / max(1, s["coverage_before"].get(a, 0))]
                 for a in aspects])
    lb, la = s["length_before"], s["length_after"]
    if lb and la:
        L += ["Length (characters):", ""]
        L += _table(["", "mean len chosen", "mean len rejected", "share chosen longer"],
                    [["pool", lb["mean_len_chosen"], lb["mean_len_rejected"],
                      lb["share_chosen_longer"]],
                     ["selected", la["mean_len_chosen"], la["mean_len_rejected"],
                      la["share_chosen_longer"]]])
    return L


def _md_comparison(s: dict) -> list[str]:
    """The selectors against the hidden overall preference; nothing when it is unknown."""
    if "comparison" not in s:
        return []
    c = s["comparison"]
    L = ["## Against the hidden overall preference (evaluation only)", "",
         f"Pool: {c['pool']['n_pairs']} train pairs, {c['pool']['n_with_overall']} with an "
         f"overall preference, conflict rate {_fmt(c['pool']['conflict_rate'])}. "
         "AUC = ROC-AUC of the selector's keep-score for 'agrees with overall' "
         "(for PD the keep-score is -PD); conflict rate of the kept subset.", ""]
    rows = [[m, v.get("auc"), v["n_selected"], v["conflict_rate"]]
            for m, v in c.items() if m != "pool"]
    return L + _table(["selector", "conflict AUC", "kept", "conflict rate of kept"], rows)


def _md_stage_times(r: dict) -> list[str]:
    return ["## Stage times", ""] + _table(["stage", "seconds"], [
        [k, v["wall_seconds"]] for k, v in r["manifest"]["stages"].items()])
