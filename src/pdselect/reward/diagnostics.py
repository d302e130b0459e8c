"""Proxy diagnostics: is an aspect's proxy better than chance, and how sure are we?

    lo, hi = accuracy_interval(correct=70, n=100)        # 95% Wilson interval (pdselect.stats)
    warnings = proxy_warnings(metrics)                    # summary sentences for log + report

A proxy whose held-out accuracy is not clearly above 0.5 makes its aspect's term of PD noise;
``reliability_weights`` turns the lower 95% bounds of held-out accuracies into the weights of
reliability-weighted PD.
"""

from __future__ import annotations

import numpy as np

from .base import pearson

MIN_VAL_PAIRS = 30


def accuracy_interval(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion correct/n (NaN, NaN when n == 0)."""
    from ..stats import wilson_interval

    return wilson_interval(correct, n)


def interval_of(m: dict) -> tuple[float, float]:
    """The metrics' interval, or the Wilson interval from val_accuracy and n_val."""
    if m.get("val_accuracy_ci95") is not None:
        lo, hi = m["val_accuracy_ci95"]
        return float(lo), float(hi)
    acc, n = m.get("val_accuracy"), int(m.get("n_val") or 0)
    if acc is None or n == 0 or not np.isfinite(acc):
        return float("nan"), float("nan")
    return accuracy_interval(int(round(acc * n)), n)


def chance_aspects(metrics: dict[str, dict]) -> list[str]:
    """Aspects whose proxy is not shown better than chance: no held-out accuracy, or a 95%
    interval whose lower end is not above 0.5."""
    out = []
    for a, m in metrics.items():
        acc, lo = m.get("val_accuracy"), interval_of(m)[0]
        if acc is None or not np.isfinite(acc) or not lo > 0.5:
            out.append(a)
    return out


def proxy_warnings(metrics: dict[str, dict], weighting: str | None = None) -> list[str]:
    """At most three sentences, each listing every aspect it concerns (not one per aspect):
    proxies with no held-out pairs, proxies not better than chance, proxies validated on few
    pairs. The advice to use reliability weights appears only when ``weighting`` is not
    already ``reliability``."""
    none, chance, few = [], [], []
    for a, m in metrics.items():
        n, acc = int(m.get("n_val") or 0), m.get("val_accuracy")
        lo, hi = interval_of(m)
        if n == 0 or acc is None or not np.isfinite(acc):
            none.append(repr(a))
        elif not lo > 0.5:
            chance.append(f"{a!r} {acc:.3f} (95% CI {lo:.3f}-{hi:.3f}, {n} pairs)")
        elif n < MIN_VAL_PAIRS:
            few.append(f"{a!r} on only {n} pairs (accuracy {acc:.3f}, 95% CI {lo:.3f}-{hi:.3f})")
    out = []
    if none:
        out.append(f"no held-out pairs for the proxies of {', '.join(none)}: their accuracy is "
                   "unknown; PD may rest on proxies no better than chance.")
    if chance:
        every = " (every proxy)" if len(chance) == len(metrics) else ""
        advice = ("; consider score.weighting=reliability or more data" if weighting !=
                  "reliability" else "; reliability weighting already gives them weight 0 "
                  "unless their interval clears 0.5: more data or a stronger proxy helps")
        out.append(f"{len(chance)} of {len(metrics)} proxies are not better than chance"
                   f"{every}, held-out accuracy: {', '.join(chance)}. Their terms of PD are "
                   f"noise{advice}.")
    if few:
        out.append(f"proxies validated on fewer than {MIN_VAL_PAIRS} held-out pairs: "
                   f"{', '.join(few)}.")
    return out


def reliability_weights(metrics: dict[str, dict], aspects: list[str]) -> np.ndarray:
    """w_k = max(0, 2 * lo_k - 1), lo_k the lower end of the 95% Wilson interval of proxy k's
    held-out accuracy: 0 unless the proxy is shown better than chance, and shrunk by sample
    size (0.9 on 20 pairs counts less than 0.8 on 500). No overall label needed. An aspect
    without a held-out accuracy gets weight 1 (the paper's equal weight), so the option never
    silences an aspect it knows nothing about."""
    w = []
    for a in aspects:
        m = metrics.get(a, {})
        acc, lo = m.get("val_accuracy"), interval_of(m)[0] if m else float("nan")
        if acc is None or not np.isfinite(acc) or not np.isfinite(lo):
            w.append(1.0)
        else:
            w.append(max(0.0, 2.0 * lo - 1.0))
    return np.asarray(w, dtype=np.float64)


def label_agreement(gaps: np.ndarray, pairs, aspects: list[str],
                    dlen: np.ndarray | None = None) -> dict[str, dict]:
    """Per aspect k, how often column k of ``gaps`` agrees with the labels of D_k (the pairs
    labelled k; a gap > 0 agrees, a tie does not): accuracy, its 95% Wilson interval, counts,
    and (with ``dlen``, the pairs' length differences) the gap's correlation with length.
    The one measurement behind a trained proxy's out-of-fold accuracy and a given reward's
    agreement (reward/crossfit.py, reward/fixed.py)."""
    labels = pairs["aspect"].to_numpy()
    out = {}
    for k, a in enumerate(aspects):
        rows = np.flatnonzero(labels == a)
        correct = int((gaps[rows, k] > 0).sum())
        out[a] = {"val_accuracy": correct / len(rows) if len(rows) else float("nan"),
                  "val_accuracy_ci95": list(accuracy_interval(correct, len(rows))),
                  "n_val": int(len(rows)), "n_pairs": int(len(rows)),
                  "n_inputs": int(pairs["input_id"].iloc[rows].nunique()) if len(rows) else 0}
        if dlen is not None:
            out[a]["gap_length_corr"] = pearson(gaps[rows, k], dlen[rows])
    return out
