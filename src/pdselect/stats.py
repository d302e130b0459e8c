"""The one place for intervals and paired statistics (scipy underneath, no hand-rolled copies).

    lo, hi = wilson_interval(correct=70, n=100)          # 95% Wilson score interval
    m, se = mean_se([0.61, 0.64, 0.66])                  # mean and standard error (ddof=1)
    d = paired_difference(acc_pd, acc_all)               # per-seed differences: mean, SE, t, p
    auc, lo, hi = delong_auc(score, positive)            # ROC-AUC with a DeLong 95% interval
    d = delong_difference(score_a, score_b, positive)    # paired AUC difference, DeLong
    lc = length_controlled(correct, len_diff)            # accuracy within length strata + logit

Conventions: every interval is two-sided 95% unless ``confidence`` says otherwise; a quantity
that is undefined (no data, one seed) is NaN, never a made-up number.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
NAN = float("nan")


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal quantile (1.959964 for 95%)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(correct: int, n: int,
                    confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of the proportion correct/n; (NaN, NaN) when n == 0."""
    if n <= 0:
        return NAN, NAN
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def binomial_se(p: float, n: int) -> float:
    """Standard error of one proportion p measured on n items: sqrt(p (1 - p) / n)."""
    return math.sqrt(p * (1 - p) / n) if n > 0 and math.isfinite(p) else NAN


def mean_se(x) -> tuple[float, float]:
    """(mean, standard error of the mean with ddof=1); SE is NaN for fewer than 2 values."""
    from scipy.stats import sem

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return NAN, NAN
    return float(x.mean()), (float(sem(x)) if len(x) > 1 else NAN)


def paired_difference(a, b, confidence: float = CONFIDENCE) -> dict:
    """a - b paired by position (e.g. per seed), NaN pairs dropped: mean, se, n, wins (a > b),
    the paired t-test (scipy.stats.ttest_rel) and its confidence interval of the mean."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = a - b
    mean, se = mean_se(d)
    out = {"mean": mean, "se": se, "n": int(len(d)), "wins": int((d > 0).sum()),
           "t": NAN, "p": NAN, "ci": (NAN, NAN)}
    if len(d) > 1 and se > 0:
        res = ttest_rel(a, b)
        ci = res.confidence_interval(confidence)
        out.update(t=float(res.statistic), p=float(res.pvalue), ci=(float(ci.low),
                                                                    float(ci.high)))
    return out


def format_paired(d: dict) -> str:
    """'+0.012 ± 0.004 (2/3)': the mean difference, its SE and the wins, as the bench tables
    print it."""
    if d["n"] == 0:
        return ""
    return f"{d['mean']:+.3f} ± {d['se']:.3f} ({d['wins']}/{d['n']})"


# ----------------------------------------------------------------------------- ROC-AUC
def _placements(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (Sun & Xu 2014, via mid-ranks): V10 per positive,
    V01 per negative; AUC = mean(V10) = mean(V01), ties count 1/2 (Mann-Whitney)."""
    from scipy.stats import rankdata

    pos, neg = score[positive], score[~positive]
    m, n = len(pos), len(neg)
    r_all = rankdata(np.concatenate([pos, neg]))
    v10 = (r_all[:m] - rankdata(pos)) / n
    v01 = 1.0 - (r_all[m:] - rankdata(neg)) / m
    return v10, v01


def _clean(score, positive) -> tuple[np.ndarray, np.ndarray] | None:
    score = np.asarray(score, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if positive.sum() < 2 or (~positive).sum() < 2:
        return None  # an AUC (and its variance) needs both classes, twice each
    return score, positive


def delong_auc(score, positive, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(AUC, lo, hi): the ROC-AUC of ``score`` for ``positive`` with DeLong's normal interval
    clipped to [0, 1]; all NaN when a class has fewer than 2 members."""
    c = _clean(score, positive)
    if c is None:
        return NAN, NAN, NAN
    v10, v01 = _placements(*c)
    auc = float(v10.mean())
    se = math.sqrt(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))
    z = z_value(confidence)
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)


def delong_difference(score_a, score_b, positive, confidence: float = CONFIDENCE) -> dict:
    """AUC(a) - AUC(b) on the SAME pairs with DeLong's paired variance: diff, se, ci, p
    (two-sided normal test of no difference). NaN fields when undefined."""
    from scipy.stats import norm

    ca, cb = _clean(score_a, positive), _clean(score_b, positive)
    if ca is None or cb is None:
        return {"diff": NAN, "se": NAN, "ci": (NAN, NAN), "p": NAN}
    a10, a01 = _placements(*ca)
    b10, b01 = _placements(*cb)
    diff = float(a10.mean() - b10.mean())
    var = (np.cov(a10, b10, ddof=1) @ [1, -1] @ [1, -1] / len(a10)
           + np.cov(a01, b01, ddof=1) @ [1, -1] @ [1, -1] / len(a01))
    se = math.sqrt(max(float(var), 0.0))
    z = z_value(confidence)
    p = float(2 * norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return {"diff": diff, "se": se, "ci": (diff - z * se, diff + z * se), "p": p}


def jaccard(a, b) -> float:
    """|A & B| / |A | B| of two boolean masks over the same items (NaN when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else NAN


# ----------------------------------------------------------------------------- length control
def logistic_fit(x, y, l2: float = 0.0) -> tuple[float, float]:
    """(b0, b1) of P(y = 1) = sigmoid(b0 + b1 x) by maximum likelihood (scipy.optimize, BFGS),
    with an optional L2 penalty ``l2 * (b0^2 + b1^2)`` that keeps separable data finite."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def loss(b):
        z = b[0] + b[1] * x
        return -(y * log_expit(z) + (1 - y) * log_expit(-z)).sum() + l2 * (b @ b)

    def grad(b):
        r = expit(b[0] + b[1] * x) - y
        return np.array([r.sum(), (r * x).sum()]) + 2 * l2 * b

    res = minimize(loss, np.zeros(2), jac=grad, method="BFGS", options={"gtol": 1e-10})
    return float(res.x[0]), float(res.x[1])


def _separated(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``x`` splits right (y > 1/2) from wrong (y < 1/2) with no overlap."""
    hi, lo = x[y > 0.5], x[y < 0.5]
    if len(hi) == 0 or len(lo) == 0:
        return True
    return bool(lo.max() < hi.min() or hi.max() < lo.min())


def length_controlled(correct, len_diff, l2: float = 1e-3) -> dict:
    """Accuracy controlled for length, on pairs oriented by the overall preference.

    ``correct``: 1 / 0 (or 1/2 for a tie) per pair; ``len_diff``: length of the overall-
    preferred response minus the other's. Returns the plain accuracy, the accuracy within the
    two strata (preferred is the longer / the shorter one; equal lengths in neither), their
    mean (``balanced``: 0.5 for the rule "longer wins" on any data), and the logistic
    regression of correctness on the length difference in units of its standard deviation:
    ``adjusted`` = sigmoid(b0), the accuracy it predicts at equal lengths, ``slope`` = b1.
    Both are NaN when the length difference separates right from wrong completely (e.g. the
    rule "longer wins" itself): the fit has no finite solution there."""
    from scipy.special import expit

    c, d = np.asarray(correct, dtype=np.float64), np.asarray(len_diff, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(d)
    c, d = c[ok], d[ok]
    longer, shorter = d > 0, d < 0
    out = {"acc": float(c.mean()) if len(c) else NAN, "n": int(len(c)),
           "n_longer": int(longer.sum()), "n_shorter": int(shorter.sum()),
           "acc_longer": float(c[longer].mean()) if longer.any() else NAN,
           "acc_shorter": float(c[shorter].mean()) if shorter.any() else NAN}
    out["balanced"] = (out["acc_longer"] + out["acc_shorter"]) / 2
    scale = float(np.std(d)) if len(d) > 1 else 0.0
    if scale > 0 and 0 < c.mean() < 1 and not _separated(d, c):
        b0, b1 = logistic_fit(d / scale, c, l2)
        out.update(adjusted=float(expit(b0)), slope=b1)
    else:
        out.update(adjusted=NAN, slope=NAN)
    return out
