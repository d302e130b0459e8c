"""The cheap preference-learning probe: what a learner trained ONLY on a selection knows.

A fresh Bradley–Terry head on frozen encoder features is trained on the selected pairs (with
their aspect labels, as DPO would see them) and scored on HELD-OUT pairs labelled by the
OVERALL preference. Reported at several L2 strengths because the answer depends on how much the
learner memorises label noise (BASELINES.md): a strongly regularised head shrugs off conflicts,
a weakly regularised one — like DPO on a language model — does not.

The DFPO variant trains the head with the paper's objective -log sigmoid(K * dr + PD) on the
full data: with w' = K w this is a BT head with a fixed per-pair offset PD and L2 / K^2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .reward.heads import PairGroup, fit_heads, head_rewards


def overall_accuracy(r_chosen: np.ndarray, r_rejected: np.ndarray,
                     overall_delta: np.ndarray) -> float:
    """Share of pairs whose reward order matches the overall preference (overall ties excluded;
    a reward tie counts 1/2)."""
    od = np.asarray(overall_delta, dtype=np.float64)
    ok = ~np.isnan(od) & (od != 0)
    if not ok.any():
        return float("nan")
    d = (np.asarray(r_chosen) - np.asarray(r_rejected))[ok] * np.sign(od[ok])
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def probe_accuracy(features_fn, train: pd.DataFrame, test: pd.DataFrame, l2s: list[float],
                   seed: int, epochs: int = 300, lr: float = 0.01,
                   offset: np.ndarray | None = None, K: int = 1) -> dict[float, float]:
    """Train one head per L2 strength on ``train`` (public columns input/chosen/rejected) and
    return {l2: overall accuracy on ``test``} (``test`` needs ``h_overall_delta``).

    ``features_fn(inputs, responses) -> (n, d)`` gives frozen features (cached embeddings).
    ``offset`` (per train pair) switches to the DFPO objective with ``K`` aspects.
    """
    n = len(train)
    X = features_fn(list(train["input"]) * 2, list(train["chosen"]) + list(train["rejected"]))
    dlen = np.zeros(n) if offset is None else np.asarray(offset, dtype=np.float64)
    rho = 0.0 if offset is None else 1.0
    Xt = features_fn(list(test["input"]) * 2, list(test["chosen"]) + list(test["rejected"]))
    out = {}
    for l2 in l2s:
        group = PairGroup(0, np.arange(n), np.arange(n, 2 * n), dlen, rho)
        heads = fit_heads(X, [group], 1, "linear", l2=l2 / (K * K), epochs=epochs, lr=lr,
                          seed=seed)
        r = head_rewards(heads, Xt)[:, 0]
        out[float(l2)] = overall_accuracy(r[: len(test)], r[len(test):],
                                          test["h_overall_delta"].to_numpy())
    return out
