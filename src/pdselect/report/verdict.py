"""The verdict: which selector this data supports, and how sure that is (first in every report).

With an overall label (the hidden ``h_agrees_overall`` of the train pairs, evaluation only, as
the conflict AUC uses it) the candidates PD, margin (unified reward model) and length ("the
chosen response is the longer": a length filter) are ranked by conflict AUC — how well each
keep-score puts the pairs that agree with the overall preference first — with DeLong 95%
intervals, and the best is compared with every other on the SAME pairs (paired DeLong). A
winner is named only when its AUC interval is above 0.5 (random) and every paired difference
interval is above 0; otherwise the verdict says "cannot tell" and between whom. The kept-set
agreement rates (Wilson 95% intervals) are shown as evidence at the configured budget.

Without an overall label nothing measures which selector is better: the verdict reports proxy
reliability (held-out accuracies with intervals) and how much PD's and the margin's kept sets
overlap (Jaccard), and says "cannot tell". When every proxy is at chance it says PD is noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import delong_auc, delong_difference, jaccard

# keep-score of each candidate (higher = kept first): column and sign
CANDIDATES = {"pd": ("pd", -1.0), "margin": ("margin", 1.0), "length": ("len_gap", 1.0)}
NAMES = {"pd": "PD", "margin": "the margin baseline (unified reward model)",
         "length": "the length rule (keep pairs whose chosen response is the longer)",
         "random": "random"}
SHORT = {"pd": "PD", "margin": "the margin", "length": "the length rule", "random": "random"}
METHOD_NOTE = ("conflict AUC with DeLong 95% intervals, paired DeLong intervals for the "
               "differences on the same pairs; kept-set agreement rates with Wilson 95% "
               "intervals")
ADVICE_NOISE = ("use per-aspect scores of your own (proxy.backend=scores), an off-the-shelf "
                "reward model (proxy.backend=reward_model), a fine-tuned proxy "
                "(proxy.backend=multihead), or more data per aspect")
HIGH_OVERLAP = 0.8  # PD and the margin keeping this share of the same pairs: choice matters little


def keep_scores(pool: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each candidate's keep-score over the pool, for the candidates whose column exists."""
    pool = with_length(pool)
    out = {}
    for name, (col, sign) in CANDIDATES.items():
        if col in pool.columns and np.isfinite(pool[col].to_numpy(np.float64)).any():
            out[name] = sign * pool[col].to_numpy(np.float64)
    return out


def with_length(pool: pd.DataFrame) -> pd.DataFrame:
    """The pool with ``len_gap`` = len_chosen - len_rejected (characters; the length selector's
    key) when it has both lengths."""
    if "len_gap" in pool.columns or not {"len_chosen", "len_rejected"} <= set(pool.columns):
        return pool
    return pool.assign(len_gap=pool["len_chosen"].to_numpy(np.float64)
                       - pool["len_rejected"].to_numpy(np.float64))


def build_verdict(proxy_metrics: dict, pool: pd.DataFrame, comparison: dict | None,
                  kept: dict[str, np.ndarray], unified: dict | None = None) -> dict:
    """The verdict dict: selector (a candidate name or None), confidence, text, evidence.

    ``proxy_metrics``: proxy/metrics.json's ``aspects``; ``pool``: the score pool (pd,
    margin, lengths, ``h_agrees_overall`` when known); ``comparison``: selection_metrics'
    result or None; ``kept``: boolean kept masks of the pool by selector (pd, margin);
    ``unified``: the margin model's metrics (its held-out accuracy), when trained."""
    from ..reward.diagnostics import chance_aspects, interval_of

    noise = chance_aspects(proxy_metrics)
    reliability = {a: {"accuracy": m.get("val_accuracy"), "n": m.get("n_val"),
                       "ci95": list(interval_of(m))} for a, m in proxy_metrics.items()}
    overlap = (jaccard(kept["pd"], kept["margin"]) if {"pd", "margin"} <= set(kept)
               else None)
    evidence = {"method": METHOD_NOTE, "proxy_reliability": reliability,
                "aspects_at_chance": noise, "jaccard_pd_margin": overlap,
                "margin_reliability": None if not unified else {
                    "accuracy": unified.get("val_accuracy"), "n": unified.get("n_val"),
                    "ci95": list(interval_of(unified))}}
    agrees = (pool["h_agrees_overall"].to_numpy(np.float64)
              if "h_agrees_overall" in pool.columns else np.full(len(pool), np.nan))
    known = ~np.isnan(agrees)
    all_noise = bool(proxy_metrics) and len(noise) == len(proxy_metrics)
    if known.sum() >= 4 and 0 < agrees[known].mean() < 1:
        v = _labelled(keep_scores(pool), known, agrees[known] == 1, comparison, evidence)
        if all_noise:
            pd_lo = v["evidence"]["auc"].get("pd", {}).get("ci95", [np.nan])[0]
            v["text"] += (" Every aspect proxy is at chance on its own held-out pairs, yet PD "
                          "ranks better than random here; stronger proxies may help: "
                          if pd_lo > 0.5 else " Every aspect proxy is at chance and PD ranks "
                          "no better than random: PD is noise here; ") + ADVICE_NOISE + "."
        return v
    return _unlabelled(noise, proxy_metrics, overlap, evidence, all_noise)


def _auc_rows(scores: dict, known: np.ndarray, positive: np.ndarray) -> dict:
    out = {}
    for name, s in scores.items():
        auc, lo, hi = delong_auc(s[known], positive)
        if np.isfinite(auc):
            out[name] = {"auc": auc, "ci95": [lo, hi]}
    return out


def _kept_rows(comparison: dict | None) -> dict:
    if not comparison:
        return {}
    return {m: {k: v[k] for k in ("agreement", "agreement_ci95", "n_known", "n_selected")
                if k in v} for m, v in comparison.items() if m != "pool"}


def _labelled(scores: dict, known: np.ndarray, positive: np.ndarray, comparison: dict | None,
              evidence: dict) -> dict:
    """The verdict when the overall label is known for some pairs."""
    aucs = _auc_rows(scores, known, positive)
    evidence.update(n_labelled=int(known.sum()), auc=aucs, kept=_kept_rows(comparison),
                    length_available="length" in aucs)
    if not aucs:
        return {"selector": None, "confidence": "cannot tell", "evidence": evidence,
                "text": "Cannot tell: no selector's keep-score could be evaluated."}
    best = max(aucs, key=lambda m: aucs[m]["auc"])
    diffs = {}
    for m in aucs:
        if m != best:
            d = delong_difference(scores[best][known], scores[m][known], positive)
            diffs[m] = {"diff": d["diff"], "ci95": list(d["ci"]), "p": d["p"]}
    evidence["differences_vs_best"] = diffs
    b = aucs[best]
    tied = [m for m, d in diffs.items() if not d["ci95"][0] > 0]
    sep = ", ".join(f"{SHORT[m]} {aucs[m]['auc']:.3f} (difference {d['diff']:+.3f}, 95% CI "
                    f"{d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})" for m, d in diffs.items())
    head = (f"On {int(known.sum())} pairs with a known overall preference, {NAMES[best]} ranks "
            f"agreeing pairs first best: conflict AUC {b['auc']:.3f} (95% CI {b['ci95'][0]:.3f}"
            f"-{b['ci95'][1]:.3f})" + (f"; {sep}." if sep else "."))
    if not b["ci95"][0] > 0.5:
        return {"selector": None, "confidence": "cannot tell", "evidence": evidence,
                "text": f"Cannot tell: no selector is shown better than random. {head}"}
    if tied:
        short = [SHORT[m] for m in [best, *tied]]
        names = ", ".join(short[:-1]) + " and " + short[-1]
        ahead = [SHORT[m] for m in diffs if m not in tied]
        also = (f" {SHORT[best][0].upper() + SHORT[best][1:]} is ahead of "
                f"{' and '.join(ahead)} (interval of the difference above 0)." if ahead else "")
        return {"selector": None, "confidence": "cannot tell", "evidence": evidence,
                "text": f"Cannot tell {names} apart (their intervals overlap).{also} {head}"}
    text = f"Use {NAMES[best]}: its 95% intervals separate from every alternative. {head}"
    if best == "length":
        text += " PD adds nothing here that a length filter would not."
    elif "length" not in aucs:
        text += " (The length rule was not compared: the pool has no response lengths.)"
    return {"selector": best, "confidence": "clear", "evidence": evidence, "text": text}


def _margin_line(m: dict | None) -> tuple[str, bool]:
    """A sentence on the margin model's held-out accuracy, and whether it beats chance."""
    if not m or m["accuracy"] is None or not np.isfinite(m["accuracy"]):
        return "", False
    lo, hi = m["ci95"]
    ok = bool(lo > 0.5)
    return (f" The margin's unified model: held-out accuracy {m['accuracy']:.3f} (95% CI "
            f"{lo:.3f}-{hi:.3f}, {m['n']} pairs){'' if ok else ', not better than chance'}.",
            ok)


def _unlabelled(noise: list, metrics: dict, overlap: float | None, evidence: dict,
                all_noise: bool) -> dict:
    """The verdict without an overall label: reliability and agreement only."""
    n_ok = len(metrics) - len(noise)
    rel = (f"{n_ok} of {len(metrics)} aspect proxies are better than chance on held-out pairs"
           + (f" (at chance: {', '.join(map(repr, noise))})" if noise else ""))
    margin, m_ok = _margin_line(evidence["margin_reliability"])
    if all_noise:
        alt = (" The margin's unified model is better than chance, so select.method=margin "
               "is the stronger choice meanwhile." if m_ok else "")
        return {"selector": None, "confidence": "none", "evidence": evidence,
                "text": f"PD is noise here: no aspect proxy is shown better than chance on its "
                        f"held-out pairs ({rel}), so PD ranks pairs at random. Do not select "
                        f"by PD on these proxies: {ADVICE_NOISE}.{margin}{alt}"}
    agree = ""
    if overlap is not None:
        agree = (f" PD and the margin keep largely the same pairs (Jaccard {overlap:.2f}): "
                 "the choice between them matters little here." if overlap >= HIGH_OVERLAP
                 else f" PD and the margin keep different pairs (Jaccard {overlap:.2f} of "
                      "their kept sets).")
    return {"selector": None, "confidence": "cannot tell", "evidence": evidence,
            "text": f"Cannot tell which selector is better: the data has no overall preference "
                    f"to measure against. {rel}.{margin}{agree} To decide, add an overall rating for "
                    "a few hundred pairs (an 'overall' column, or the source's preference "
                    "file) and re-run the report."}

