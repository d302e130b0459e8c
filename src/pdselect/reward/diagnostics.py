"""Proxy diagnostics: is an aspect's proxy better than chance, and how sure are we?

    lo, hi = accuracy_interval(correct=70, n=100)        # 95% Wilson interval
    warnings = proxy_warnings(metrics)                    # list of sentences for log + report

A proxy whose held-out accuracy is not clearly above 0.5 makes its aspect's term of PD noise;
``reliability_weights`` turns held-out accuracies into the weights of reliability-weighted PD.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
MIN_VAL_PAIRS = 30


def accuracy_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion correct/n (NaN, NaN when n == 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = correct / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def interval_of(m: dict) -> tuple[float, float]:
    """The metrics' interval, or the Wilson interval from val_accuracy and n_val."""
    if m.get("val_accuracy_ci95") is not None:
        lo, hi = m["val_accuracy_ci95"]
        return float(lo), float(hi)
    acc, n = m.get("val_accuracy"), int(m.get("n_val") or 0)
    if acc is None or n == 0 or not np.isfinite(acc):
        return float("nan"), float("nan")
    return accuracy_interval(int(round(acc * n)), n)


def proxy_warnings(metrics: dict[str, dict]) -> list[str]:
    """One sentence per aspect whose proxy is not shown better than chance."""
    out = []
    for a, m in metrics.items():
        n = int(m.get("n_val") or 0)
        acc = m.get("val_accuracy")
        lo, hi = interval_of(m)
        if n == 0 or acc is None or not np.isfinite(acc):
            out.append(f"aspect {a!r}: no held-out pairs, so its proxy's accuracy is unknown; "
                       "PD may rest on a proxy no better than chance.")
        elif not lo > 0.5:
            out.append(f"aspect {a!r}: proxy held-out accuracy {acc:.3f} (95% CI {lo:.3f}-"
                       f"{hi:.3f}, {n} pairs) is not better than chance: its term of PD is "
                       "noise (consider score.weighting=reliability or more data).")
        elif n < MIN_VAL_PAIRS:
            out.append(f"aspect {a!r}: proxy validated on only {n} pairs (< {MIN_VAL_PAIRS}); "
                       f"accuracy {acc:.3f}, 95% CI {lo:.3f}-{hi:.3f}.")
    return out


def reliability_weights(metrics: dict[str, dict], aspects: list[str]) -> np.ndarray:
    """w_k = max(0, 2 * acc_k - 1): 0 at chance, 1 for a perfect proxy (held-out accuracy).

    Needs no overall label. An aspect without a held-out accuracy gets weight 1 (the paper's
    equal weight), so the option never silences an aspect it knows nothing about."""
    w = []
    for a in aspects:
        acc = metrics.get(a, {}).get("val_accuracy")
        w.append(1.0 if acc is None or not np.isfinite(acc) else max(0.0, 2.0 * acc - 1.0))
    return np.asarray(w, dtype=np.float64)
