"""Report: what every stage did, and how good the selection is when the overall label is known.

Writes ``report.json`` (everything, machine-readable) and ``report.md`` (the same for people).
All numbers are computed here from the run directory's artifacts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import RunDir, read_json
from .config import RunConfig
from .evaluate import selection_metrics


def _length_stats(pairs: pd.DataFrame) -> dict:
    lc, lr = pairs["len_chosen"].to_numpy(float), pairs["len_rejected"].to_numpy(float)
    if len(lc) == 0:
        return {}
    return {"mean_len_chosen": float(lc.mean()), "mean_len_rejected": float(lr.mean()),
            "share_chosen_longer": float((lc > lr).mean())}


def _selection_part(cfg: RunConfig, run: RunDir, train: pd.DataFrame) -> dict:
    sel = pd.read_parquet(run.root / "select" / "selection.parquet")
    chosen = train.merge(sel.loc[sel["selected"], ["pair_id"]], on="pair_id")
    part = {"method": cfg.select.method, "n_pool": len(sel), "n_selected": int(sel["selected"].sum()),
            "coverage_before": train["aspect"].value_counts().sort_index().to_dict(),
            "coverage_after": chosen["aspect"].value_counts().sort_index().to_dict(),
            "length_before": _length_stats(train), "length_after": _length_stats(chosen)}
    if "h_agrees_overall" in train.columns and train["h_agrees_overall"].notna().any():
        from .pipeline import load_score_pool

        pool = load_score_pool(run).merge(train[["pair_id", "h_agrees_overall"]], on="pair_id")
        methods = list(dict.fromkeys([cfg.select.method] + list(cfg.select.compare)))
        part["comparison"] = selection_metrics(
            pool, methods, cfg.select.budget, cfg.select.budget_count, cfg.seed,
            "aspect" if cfg.select.stratify_by_aspect else None)
    return part


def build_report(cfg: RunConfig, run: RunDir) -> tuple[dict, str]:
    root = run.root
    ingest = read_json(root / "ingest" / "meta.json")
    agg = read_json(root / "aggregate" / "meta.json")
    proxy = read_json(root / "proxy" / "metrics.json")
    score = read_json(root / "score" / "meta.json")
    pairs = pd.read_parquet(root / "aggregate" / "pairs.parquet")
    train = pairs[pairs["split"] == "train"]
    report = {"run_dir": str(root), "seed": cfg.seed, "source": ingest["source"],
              "ingest": ingest, "aggregate": agg, "proxy": proxy, "score": score,
              "selection": _selection_part(cfg, run, train),
              "ingest_counts": dict(zip(("dropped", "ratings_rejected"),
                                        split_ingest_rejects(ingest["rejects"]))),
              "manifest": read_json(root / "manifest.json")}
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


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out + [""]


def render_markdown(r: dict, cfg: RunConfig) -> str:
    L = [f"# pdselect report: {md_escape(r['source'])}", "",
         f"Run {md_escape(r['run_dir'])}, seed {r['seed']}, selector "
         f"**{md_escape(cfg.select.method)}**, budget "
         + (f"{cfg.select.budget_count} pairs" if cfg.select.budget_count
            else f"{cfg.select.budget:.0%}") + ".", "", "## Counts per stage", ""]
    ing, agg = r["ingest"], r["aggregate"]
    dropped, ratings = split_ingest_rejects(ing["rejects"])
    what = "responses" if ing["kind"] == "rated" else "pairs"
    rows = [["ingest", ing.get("n_responses", ing.get("n_pairs")), what,
             f"{dropped} records/{what} dropped, {ratings} ratings rejected (response kept)"],
            ["aggregate", agg["n_pairs"], f"pairs ({agg['n_train']} train / {agg['n_test']} test)",
             f"{sum(agg['rejects'].values())} pairs dropped"],
            ["select", r["selection"]["n_selected"], f"of {r['selection']['n_pool']} train pairs",
             f"{r['selection']['n_pool'] - r['selection']['n_selected']} pairs not selected"]]
    L += _table(["stage", "kept", "what", "dropped or rejected"], rows)
    def kind(st: str, reason: str) -> str:
        if st == "aggregate":
            return "pair dropped"
        if reason.startswith(_RATING_REASON_PREFIX):
            return "rating rejected (response kept)"
        return "record dropped" if ing["kind"] == "pairs" else "response dropped"

    drops = [[st, kind(st, reason), reason, n]
             for st in ("ingest", "aggregate") for reason, n in r[st]["rejects"].items()]
    if drops:
        L += ["Dropped or set aside, by reason (details in each stage's rejects.jsonl):", ""]
        L += _table(["stage", "what", "reason", "count"], drops)
    L += ["## Proxy reward models", ""]
    rows = []
    for a, m in r["proxy"]["aspects"].items():
        rows.append([a, m.get("n_train"), m.get("n_val"), m.get("val_accuracy"),
                     m.get("length_corr_before"), m.get("length_corr_after")])
    if "unified" in r["proxy"]:
        m = next(iter(r["proxy"]["unified"].values()))
        rows.append(["(unified, margin baseline)", m.get("n_train"), m.get("n_val"),
                     m.get("val_accuracy"), m.get("length_corr_before"),
                     m.get("length_corr_after")])
    L += _table(["aspect", "train pairs", "val pairs", "val accuracy",
                 "reward-length r (rho=0)", "reward-length r (debiased)"], rows)
    s = r["selection"]
    L += ["## Selection", "", "Per-aspect coverage:", ""]
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
    if "comparison" in s:
        c = s["comparison"]
        L += ["## Against the hidden overall preference (evaluation only)", "",
              f"Pool: {c['pool']['n_pairs']} train pairs, {c['pool']['n_with_overall']} with an "
              f"overall preference, conflict rate {_fmt(c['pool']['conflict_rate'])}. "
              "AUC = ROC-AUC of the selector's keep-score for 'agrees with overall' "
              "(for PD the keep-score is -PD); conflict rate of the kept subset.", ""]
        rows = [[m, v.get("auc"), v["n_selected"], v["conflict_rate"]]
                for m, v in c.items() if m != "pool"]
        L += _table(["selector", "conflict AUC", "kept", "conflict rate of kept"], rows)
    L += ["## Stage times", ""]
    L += _table(["stage", "seconds"], [[k, v["wall_seconds"]]
                                       for k, v in r["manifest"]["stages"].items()])
    return "\n".join(L)
