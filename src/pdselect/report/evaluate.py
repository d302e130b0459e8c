"""Selection-level evaluation against the hidden overall preference (never used to select).

- conflict-detection ROC-AUC: how well a selector's keep-score ranks pairs that AGREE with the
  overall preference above pairs that conflict (for PD the keep-score is -PD);
- conflict rate of a selection vs the whole pool, on pairs whose overall is not tied;
- per-aspect coverage of a selection.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..select.selectors import make_selector


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC of ``score`` for the boolean ``positive`` (Mann-Whitney, ties count 1/2).

    NaN when either class is empty, so an undefined AUC is never reported as a number.
    """
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)  # average ranks handle ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# keep-score orientation of each selector's key: higher = more likely kept
KEEP_SCORE = {"pd": ("pd", -1.0), "pd_rati": ("pd_rati", -1.0), "margin": ("margin", 1.0),
              "pd_high": ("pd", 1.0), "length": ("len_gap", 1.0)}


def conflict_rate(agrees: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of pairs that conflict with the overall preference (overall ties excluded)."""
    a = np.asarray(agrees, dtype=np.float64)
    if mask is not None:
        a = a[np.asarray(mask, dtype=bool)]
    a = a[~np.isnan(a)]
    return float("nan") if len(a) == 0 else float(1.0 - a.mean())


def kept_agreement(agrees: np.ndarray, mask: np.ndarray) -> dict:
    """Share of the kept pairs (overall known) that agree with the overall preference, with
    its 95% Wilson interval and the number of kept pairs it rests on."""
    from ..stats import wilson_interval

    a = np.asarray(agrees, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    a = a[~np.isnan(a)]
    k = int((a == 1).sum())
    return {"n_known": int(len(a)), "agreement": k / len(a) if len(a) else float("nan"),
            "agreement_ci95": list(wilson_interval(k, len(a)))}


def selection_metrics(table: pd.DataFrame, methods: list[str], budget: float,
                      budget_count: int | None, seed: int,
                      stratify_by: str | None = None) -> dict:
    """Per method: AUC of its keep-score for 'agrees', conflict rate and coverage of its subset.

    ``table`` has pair_id, aspect, the selectors' keys (pd, margin, pd_rati when available) and
    ``h_agrees_overall`` (NaN = overall tie / unknown).
    """
    agrees = table["h_agrees_overall"].to_numpy(np.float64)
    known = ~np.isnan(agrees)
    out: dict = {"pool": {"n_pairs": int(len(table)), "n_with_overall": int(known.sum()),
                          "conflict_rate": conflict_rate(agrees),
                          "coverage": table["aspect"].value_counts().sort_index().to_dict()}}
    for m in methods:
        key_col = KEEP_SCORE.get(m, (None, 0))[0]
        if key_col and key_col not in table.columns:
            continue  # e.g. pd_rati without true ratings, margin without a unified model
        try:
            sel = make_selector(m, budget=budget, budget_count=budget_count,
                                stratify_by=stratify_by, random_state=seed).fit(table)
        except ConfigError:  # a selector this install lacks or whose columns the pool lacks
            continue
        mask = sel.get_support()
        res = {"n_selected": int(mask.sum()), "conflict_rate": conflict_rate(agrees, mask),
               "coverage": table.loc[mask, "aspect"].value_counts().sort_index().to_dict(),
               **kept_agreement(agrees, mask)}
        if key_col:
            col, sign = KEEP_SCORE[m]
            res["auc"] = roc_auc(sign * table.loc[known, col].to_numpy(np.float64),
                                 agrees[known] == 1)
        elif m == "random":
            res["auc"] = 0.5  # a random keep-score has expected AUC 0.5 by construction
        out[m] = res
    return out
