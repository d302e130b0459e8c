"""Report: what every stage did, and how good the selection is when the overall label is known.

Builds the ``report`` dict written as ``report.json`` (everything, machine-readable), rendered
as ``report.md`` (markdown.py) and ``report.html`` (html.py). All numbers are computed here from
the run directory's artifacts; the verdict (verdict.py) comes first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..run.artifacts import RunDir, read_json
from ..config import RunConfig
from .evaluate import selection_metrics
# report.md is rendered in markdown.py; md_escape and split_ingest_rejects stay importable here
from .markdown import md_escape, render_markdown, split_ingest_rejects  # noqa: F401


def _length_stats(pairs: pd.DataFrame) -> dict:
    from ..select.export import length_stats

    return length_stats(pairs)


# a warning when the kept pairs' chosen responses are longer than the pool's by more than this
LENGTH_SHARE_RISE = 0.05   # share of pairs with the chosen response longer (absolute)
LENGTH_MEAN_RISE = 0.10    # mean chosen length (relative)
CONFLICT_DROP_WARN = 0.5   # conflict-level subsampling dropping more than this share of the pool
NEAR_CUTOFF = 5            # pairs with texts on each side of the cut-off (the table has more)
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
    """Pairs shown with their texts and per-aspect gaps: the first ``n`` kept pairs in
    selector order and the last ``n`` dropped ones (for PD: the most agreeing kept and the most
    conflicting dropped), and the pairs on both sides of the cut-off (the last kept, the first
    dropped, NEAR_CUTOFF each at most). ``inspect`` has no texts (load_inspect(texts=False)):
    only these pairs' texts are read."""
    from ..select.export import TEXT_COLUMNS, inspect_texts

    kept, dropped = inspect[inspect["kept"]], inspect[~inspect["kept"]]
    near = min(n, NEAR_CUTOFF)
    parts = {"kept": kept.head(n), "dropped": dropped.tail(n).iloc[::-1],
             "near_kept": kept.tail(near), "near_dropped": dropped.head(near)}
    ids = pd.concat([p["pair_id"] for p in parts.values()]).drop_duplicates()
    texts = inspect_texts(root, ids).set_index("pair_id")
    cols = [c for c in inspect.columns if c not in ("input_id",)] + TEXT_COLUMNS
    return {name: part.join(texts, on="pair_id")[cols].to_dict("records")
            for name, part in parts.items()}


def selection_warnings(report: dict) -> list[str]:
    """Sentences for report.md, report.html and the log: weak proxies, a conflict level that
    drops most of the pool, a selection that favours longer chosen responses, a PD cut-off
    above 0."""
    from ..reward.diagnostics import proxy_warnings

    weighting = (report.get("pd_weights") or {}).get("weighting")
    out = list(proxy_warnings(report["proxy"].get("aspects", {}), weighting))
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
    out += token_warnings(s.get("token_check"))
    cut = s.get("pd_cutoff")
    if cut is not None and s["method"] == "pd" and cut > 0:
        n_pos = s.get("n_kept_pd_positive", 0)
        out.append(f"the PD cut-off is {cut:.4f} > 0: {n_pos} kept pairs have PD > 0 (the other "
                   "aspects on balance rate them the other way); a smaller budget keeps only "
                   "pairs the other aspects agree with.")
    return out


def token_warnings(check: dict | None) -> list[str]:
    """The hand-off's token check (select/meta.json) as warnings: pairs a trainer would DROP
    (TRL 1.16 drops a pair whose prompt alone fills max_length) shrink the delivered budget
    unseen, so they are said first thing, with the fix."""
    if not check:
        return []
    out = []
    for split in ("train", "test"):
        c = check.get(split) or {}
        n, dropped = c.get("n", 0), c.get("n_prompt_fills_max_length", 0)
        if n and dropped:
            est = " (estimated from a sample)" if c.get("sampled") else ""
            out.append(f"hand-off, {split} split: {dropped} of {n} pairs{est} have a prompt of "
                       f">= {check['max_length']} {check.get('tokenizer', '')} tokens, and TRL "
                       f"drops such pairs (longest prompt {c.get('max_prompt_tokens')} tokens). "
                       f"Fix: train with max_length >= {c.get('max_total_tokens')} "
                       "(align.max_length / --max_length), or truncate prompts from the left.")
    return out


def _selection_part(cfg: RunConfig, run: RunDir, train: pd.DataFrame,
                    pool: pd.DataFrame) -> dict:
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
            "token_check": select_meta.get("token_check"),
            "examples": _examples(inspect, cfg.select.inspect_top, run.root)}
    if "h_agrees_overall" in train.columns and train["h_agrees_overall"].notna().any():
        methods = list(dict.fromkeys([cfg.select.method] + list(cfg.select.compare)))
        part["comparison"] = selection_metrics(
            pool, methods, cfg.select.budget, cfg.select.budget_count, cfg.seed,
            "aspect" if cfg.select.stratify_by_aspect else None)
    return part


def evaluation_pool(run: RunDir, train: pd.DataFrame) -> pd.DataFrame:
    """The score pool with what evaluation and the length rule need from the pair table:
    the hidden ``h_agrees_overall`` (evaluation only), the lengths and ``len_gap``."""
    from ..run.stage_tables import load_score_pool
    from .verdict import with_length

    pool = load_score_pool(run)
    extra = [c for c in ("h_agrees_overall", "len_chosen", "len_rejected")
             if c in train.columns and c not in pool.columns]
    return with_length(pool.merge(train[["pair_id", *extra]], on="pair_id"))


def _kept_masks(cfg: RunConfig, pool: pd.DataFrame) -> dict[str, np.ndarray]:
    """PD's and the margin's kept sets over the pool at the configured budget (for their
    overlap); a selector whose column the pool lacks is left out."""
    from ..select.selectors import make_selector

    out = {}
    for m in ("pd", "margin"):
        if m in pool.columns:
            out[m] = make_selector(m, budget=cfg.select.budget,
                                   budget_count=cfg.select.budget_count,
                                   stratify_by="aspect" if cfg.select.stratify_by_aspect
                                   else None, random_state=cfg.seed).fit(pool).get_support()
    return out


def _verdict(cfg: RunConfig, pool: pd.DataFrame, proxy: dict, selection: dict) -> dict:
    from .verdict import build_verdict

    unified = next(iter(proxy.get("unified", {}).values()), None)
    return build_verdict(proxy.get("aspects", {}), pool, selection.get("comparison"),
                         _kept_masks(cfg, pool), unified)


def weights_part(cfg: RunConfig, proxy: dict, aspects: list[str]) -> dict:
    """The PD aspect weights the score stage used (score.table.pd_weights on the same
    held-out accuracies), so report.json and report.md record them."""
    from ..score.table import pd_weights

    w = pd_weights(cfg.score, aspects, proxy.get("aspects", {}))
    rule = {"equal": "w = 1 for every aspect (the paper)",
            "reliability": "w_k = max(0, 2*lo_k - 1), lo_k the lower end of the 95% Wilson "
                           "interval of proxy k's held-out accuracy",
            "user": "score.aspect_weights (aspects not listed: 1)"}.get(cfg.score.weighting, "")
    return {"weighting": cfg.score.weighting, "rule": rule,
            "weights": {a: (1.0 if w is None else float(w[i])) for i, a in enumerate(aspects)}}


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
    pool = evaluation_pool(run, train)  # the score table + evaluation columns, read once
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
                  "proxy": conflict_matrix(pool, aspects, "gap__"),
                  "true": conflict_matrix(train, aspects, DELTA_PREFIX)},
              "selection": _selection_part(cfg, run, train, pool),
              "pd_weights": weights_part(cfg, proxy, aspects),
              "ingest_counts": dict(zip(("dropped", "ratings_rejected"),
                                        split_ingest_rejects(ingest["rejects"]))),
              "manifest": read_json(root / "manifest.json")}
    report = {"verdict": _verdict(cfg, pool, proxy, report["selection"]), **report}
    report["warnings"] = selection_warnings(report)
    return report, render_markdown(report, cfg)
