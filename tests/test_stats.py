"""pdselect.stats against hand-computed numbers (and the hand-rolled formulas it replaced)."""

import math

import numpy as np
import pytest

from pdselect import stats


def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@pytest.mark.parametrize("k,n", [(70, 100), (0, 10), (10, 10), (13, 23), (42, 525), (1, 1)])
def test_wilson_equals_the_formula(k, n):
    lo, hi = stats.wilson_interval(k, n)
    want = _wilson_by_hand(k, n)
    assert abs(lo - want[0]) < 1e-9 and abs(hi - want[1]) < 1e-9
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))


def test_wilson_worked_example():
    # 70/100: centre (0.7 + 1.92/100) / 1.0384 = 0.69262, half 0.08830
    lo, hi = stats.wilson_interval(70, 100)
    assert lo == pytest.approx(0.6041, abs=1e-4) and hi == pytest.approx(0.7810, abs=1e-4)
    assert stats.z_value() == pytest.approx(1.959963984540054, abs=1e-12)


def test_mean_se_and_paired_difference():
    m, se = stats.mean_se([0.60, 0.64, 0.68])
    assert m == pytest.approx(0.64, abs=1e-12)
    assert se == pytest.approx(0.04 / math.sqrt(3), abs=1e-12)  # sd 0.04, 3 values
    assert math.isnan(stats.mean_se([0.5])[1])
    d = stats.paired_difference([0.65, 0.66, 0.64], [0.66, 0.67, 0.64])
    assert d["mean"] == pytest.approx(-0.02 / 3, abs=1e-12) and d["wins"] == 0 and d["n"] == 3
    diffs = np.array([-0.01, -0.01, 0.0])
    assert d["se"] == pytest.approx(diffs.std(ddof=1) / math.sqrt(3), abs=1e-12)
    t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(3))
    assert d["t"] == pytest.approx(t, abs=1e-9)
    assert stats.format_paired(d) == "-0.007 ± 0.003 (0/3)"
    one = stats.paired_difference([0.7, np.nan], [0.6, 0.5])
    assert one["n"] == 1 and math.isnan(one["se"]) and math.isnan(one["p"])


def test_binomial_se():
    assert stats.binomial_se(0.64, 160) == pytest.approx(math.sqrt(0.64 * 0.36 / 160), abs=1e-15)


def test_delong_auc_hand_computed():
    # positives 0.9, 0.6, 0.4; negatives 0.7, 0.3: pairs won 1+1 / 0+1 / 0+1 -> AUC 4/6
    score = np.array([0.9, 0.6, 0.4, 0.7, 0.3])
    pos = np.array([1, 1, 1, 0, 0], bool)
    auc, lo, hi = stats.delong_auc(score, pos)
    assert auc == pytest.approx(4 / 6, abs=1e-12)
    v10, v01 = np.array([1.0, 0.5, 0.5]), np.array([1 / 3, 1.0])
    se = math.sqrt(v10.var(ddof=1) / 3 + v01.var(ddof=1) / 2)
    assert lo == pytest.approx(max(0, auc - 1.959963984540054 * se), abs=1e-12)
    assert hi == pytest.approx(min(1, auc + 1.959963984540054 * se), abs=1e-12)
    from pdselect.report.evaluate import roc_auc

    rng = np.random.default_rng(0)
    s, p = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.4  # many ties
    assert stats.delong_auc(s, p)[0] == pytest.approx(roc_auc(s, p), abs=1e-12)
    assert math.isnan(stats.delong_auc(score, np.ones(5, bool))[0])


def test_delong_difference():
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.5
    good = y + rng.normal(0, 0.7, 400)
    same = stats.delong_difference(good, good, y)
    assert same["diff"] == 0 and same["se"] == 0 and same["p"] == 1.0
    d = stats.delong_difference(good, rng.normal(size=400), y)
    assert d["diff"] > 0.2 and d["ci"][0] > 0 and d["p"] < 1e-6
    other = rng.normal(size=400)
    d = stats.delong_difference(good, other, y)  # the difference of the two AUCs
    assert d["diff"] == pytest.approx(stats.delong_auc(good, y)[0]
                                      - stats.delong_auc(other, y)[0], abs=1e-12)


def test_jaccard():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 1], bool)
    assert stats.jaccard(a, b) == pytest.approx(2 / 4)
    assert math.isnan(stats.jaccard(np.zeros(3, bool), np.zeros(3, bool)))


def test_logistic_fit_closed_form():
    # x in {-1, +1}: b0 + b1 = logit(p+), b0 - b1 = logit(p-)  (saturated model)
    x = np.array([-1] * 10 + [1] * 10, float)
    y = np.array([1] * 3 + [0] * 7 + [1] * 8 + [0] * 2, float)
    b0, b1 = stats.logistic_fit(x, y)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert b0 == pytest.approx((logit(0.8) + logit(0.3)) / 2, abs=1e-6)
    assert b1 == pytest.approx((logit(0.8) - logit(0.3)) / 2, abs=1e-6)


def test_length_controlled_hand_computed():
    # 6 pairs: preferred longer in 4 (3 correct), shorter in 2 (0 correct)
    correct = [1, 1, 1, 0, 0, 0]
    diff = [10, 20, 5, 8, -7, -3]
    lc = stats.length_controlled(correct, diff)
    assert lc["acc"] == 0.5 and lc["acc_longer"] == 0.75 and lc["acc_shorter"] == 0.0
    assert lc["balanced"] == 0.375 and (lc["n_longer"], lc["n_shorter"]) == (4, 2)
    assert lc["slope"] > 0  # correctness rises with the preferred response's extra length
    # "longer wins" is right on one stratum and wrong on the other: balanced 0.5
    rule = stats.length_controlled(np.array(diff) > 0, diff)
    assert rule["balanced"] == 0.5
    assert math.isnan(rule["adjusted"])  # complete separation: no finite logistic fit
    # symmetric strata with equal |diff|: the fitted accuracy at equal length is the mean
    x = np.array([-1] * 10 + [1] * 10, float)
    y = np.array([1] * 3 + [0] * 7 + [1] * 8 + [0] * 2, float)
    lc = stats.length_controlled(y, x, l2=0.0)
    b0 = (math.log(0.8 / 0.2) + math.log(0.3 / 0.7)) / 2
    assert lc["adjusted"] == pytest.approx(1 / (1 + math.exp(-b0)), abs=1e-6)
