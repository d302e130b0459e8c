"""PD maths against the hand-computed worked example in pd.py's docstring."""

import math

import numpy as np
import pytest

from pdselect import pd as P

DELTA = np.array([[2.0, 1.0], [1.0, -3.0], [4.0, 9.0], [-2.0, 0.5]])
LABEL = np.array([0, 0, 1, 1])


def test_worked_example_normaliser():
    q = P.normaliser(DELTA, LABEL, gamma=0.5)
    assert q.tolist() == [3.0, 2.0]


def test_worked_example_normalise_and_pd():
    pd_, delta_n, q = P.pd_from_gaps(DELTA, LABEL, gamma=0.5)
    expected_n = np.array([[2 / 3, 0.5], [1 / 3, -1.0], [1.0, 1.0], [-2 / 3, 0.25]])
    np.testing.assert_allclose(delta_n, expected_n)
    np.testing.assert_allclose(pd_, [-0.5, 1.0, -1.0, 2 / 3])


def test_pd_ignores_own_aspect():
    # changing the labelled aspect's own gap must not change PD
    d2 = DELTA.copy()
    d2[0, 0] = -100.0
    n = P.normalise(d2, np.array([3.0, 2.0]))
    assert P.preference_divergence(n, LABEL)[0] == pytest.approx(-0.5)


def test_pd_three_aspects_and_weights():
    dn = np.array([[0.2, -0.4, 0.9]])
    assert P.preference_divergence(dn, np.array([1]))[0] == pytest.approx(-(0.2 + 0.9))
    w = np.array([2.0, 1.0, 0.5])
    assert P.preference_divergence(dn, np.array([1]), w)[0] == pytest.approx(-(0.4 + 0.45))


def test_nan_gaps_contribute_zero_and_zero_scale_is_safe():
    d = np.array([[np.nan, 0.0], [1.0, 0.0], [2.0, 0.0]])
    label = np.array([1, 1, 0])
    q = P.normaliser(d, label, 0.9)
    assert math.isinf(q[1])  # aspect 1 never differs: no signal, no division by zero
    pd_, dn, _ = P.pd_from_gaps(d, label, 0.9)
    assert np.isnan(dn[0, 0]) and pd_[0] == 0.0
    assert not np.isnan(pd_).any()


def test_clip_to_unit_interval():
    n = P.normalise(np.array([[10.0, -10.0]]), np.array([1.0, 2.0]))
    assert n.tolist() == [[1.0, -1.0]]


@pytest.mark.parametrize("f_plus,tau,expected", [
    (0.8, None, 0.8),
    (0.8, 1.0, math.exp(0.8) / (math.exp(0.8) + math.exp(0.2))),  # 0.6457
    (0.8, 1e9, 0.5),
    (0.5, 0.1, 0.5),
])
def test_length_balanced_share(f_plus, tau, expected):
    assert P.length_balanced_share(f_plus, tau) == pytest.approx(expected, abs=1e-6)


def test_length_balanced_indices_shares_and_size():
    rng = np.random.default_rng(0)
    dlen = np.array([1.0] * 80 + [-1.0] * 20)
    idx = P.length_balanced_indices(dlen, p_r=1.0, tau=1e9, rng=rng)
    assert len(idx) == 100
    assert (dlen[idx] >= 0).sum() == 50  # 50/50 with tau -> inf (minus side drawn with replacement)
    idx = P.length_balanced_indices(dlen, p_r=0.5, tau=None, rng=rng)
    assert len(idx) == 50 and (dlen[idx] >= 0).sum() == 40
    assert len(set(idx.tolist())) == 50  # without replacement while the pool suffices


def test_bt_logit_sign_debiases():
    # a longer chosen response (dlen > 0) already gets +rho*dlen: r needs a smaller gap
    assert P.bt_logit(np.array([1.0]), np.array([0.5]), np.array([2.0]), 0.25)[0] == 1.0
    assert P.bt_loss(np.array([0.0]))[0] == pytest.approx(math.log(2))
    assert P.bt_loss(np.array([1000.0]))[0] == pytest.approx(0.0)
    assert P.bt_loss(np.array([-1000.0]))[0] == pytest.approx(1000.0)


# ----------------------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

gaps = st.integers(2, 30).flatmap(lambda n: st.tuples(
    arrays(np.float64, (n, 3), elements=st.floats(-10, 10, allow_nan=False)),
    arrays(np.int64, (n,), elements=st.integers(0, 2)),
    st.permutations(list(range(n)))))


@settings(max_examples=80, deadline=None)
@given(gaps)
def test_property_pd_is_permutation_equivariant(data):
    delta, label, perm = data
    perm = np.array(perm)
    a = P.pd_from_gaps(delta, label, 0.9)[0]
    b = P.pd_from_gaps(delta[perm], label[perm], 0.9)[0]
    np.testing.assert_allclose(a[perm], b)


@settings(max_examples=80, deadline=None)
@given(gaps, st.lists(st.floats(0.1, 100), min_size=3, max_size=3))
def test_property_pd_is_invariant_to_each_aspects_reward_scale(data, scale):
    """gamma-quantile normalisation: rescaling one proxy model's rewards changes nothing."""
    delta, label, _ = data
    a = P.pd_from_gaps(delta, label, 0.9)[0]
    b = P.pd_from_gaps(delta * np.array(scale)[None, :], label, 0.9)[0]
    np.testing.assert_allclose(a, b, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(gaps)
def test_property_pd_is_bounded_by_k_minus_one(data):
    delta, label, _ = data
    pd_ = P.pd_from_gaps(delta, label, 0.9)[0]
    assert np.all(np.abs(pd_) <= delta.shape[1] - 1 + 1e-12)
