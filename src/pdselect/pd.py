"""Preference divergence (PD): the maths of METHOD.md 3, on plain arrays (no torch, no I/O).

Symbols follow the paper. For N pairs and K aspects:

    delta[i, k]   = r_k(x_i, y_w) - r_k(x_i, y_l)        proxy reward gap of aspect k on pair i
    label[i]      = k(z_i), the one aspect pair i is labelled with
    q_k           = gamma-quantile of |delta[i, k]| over pairs with label[i] != k
    delta_n[i, k] = clip(delta[i, k] / q_k, -1, 1)
    PD[i]         = - sum_{k' != label[i]} delta_n[i, k']

Worked example (reused by tests/test_pd.py), gamma = 0.5, K = 2 aspects a=0, b=1:

    delta = [[ 2.0,  1.0],      label = [0, 0, 1, 1]
             [ 1.0, -3.0],
             [ 4.0,  9.0],
             [-2.0,  0.5]]
    q_0 = median |delta[:,0]| over rows with label != 0 (rows 2, 3) = median(4, 2) = 3.0
    q_1 = median |delta[:,1]| over rows with label != 1 (rows 0, 1) = median(1, 3) = 2.0
    delta_n = [[ 2/3,  0.5 ], [ 1/3, -1.0], [ 1.0, 1.0], [-2/3, 0.25]]
    PD = [-0.5, +1.0, -1.0, +2/3]
    (row 1: labelled on a, but b strongly prefers y_l -> positive PD, a conflict.)
"""

from __future__ import annotations

import math

import numpy as np

#: PD is rounded to this many decimals before it is stored or ranked. Scores of one pair agree
#: across batch sizes, shard sizes and engines to ~1e-12 when its embeddings come from the cache
#: (heads run per row in float64, see reward.heads.head_rewards) and to ~1e-6 when a cold cache
#: embeds its texts in different float32 batches. Rounding far below the second and far above
#: float64 summation noise keeps rankings equal wherever the inputs are, and maps PD values that
#: only summation order separates onto one value, whose tie then breaks by pair_id.
PD_DECIMALS = 9


def length_balanced_share(f_plus: float, tau: float | None) -> float:
    """f^+ = exp(f+/tau) / (exp(f+/tau) + exp(f-/tau)) with f- = 1 - f+ (METHOD.md 3.1).

    tau=None keeps the natural share; tau -> inf tends to 0.5; tau -> 0 to the majority side.
    """
    if tau is None:
        return float(f_plus)
    f_minus = 1.0 - f_plus
    # softmax over two logits, computed stably
    a, b = f_plus / tau, f_minus / tau
    m = max(a, b)
    ea, eb = math.exp(a - m), math.exp(b - m)
    return ea / (ea + eb)


def length_balanced_indices(dlen: np.ndarray, p_r: float, tau: float | None,
                            rng: np.random.Generator) -> np.ndarray:
    """Indices of a resampled training set of size round(p_r*N) whose share of pairs with
    len(y_w) >= len(y_l) is ``length_balanced_share(f+, tau)``.

    Sampling is without replacement while a side has enough pairs, with replacement beyond.
    """
    dlen = np.asarray(dlen)
    n = len(dlen)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    plus = np.flatnonzero(dlen >= 0)
    minus = np.flatnonzero(dlen < 0)
    m = max(1, int(round(p_r * n)))
    share = length_balanced_share(len(plus) / n, tau)
    m_plus = int(round(share * m))
    m_minus = m - m_plus
    # a side with no pairs cannot be sampled: give its quota to the other side
    if len(plus) == 0:
        m_plus, m_minus = 0, m
    if len(minus) == 0:
        m_plus, m_minus = m, 0

    def take(pool: np.ndarray, k: int) -> np.ndarray:
        if k <= len(pool):
            return rng.choice(pool, size=k, replace=False)
        return np.concatenate([pool, rng.choice(pool, size=k - len(pool), replace=True)])

    idx = np.concatenate([take(plus, m_plus), take(minus, m_minus)]).astype(np.int64)
    return np.sort(idx)


def bt_logit(r_w: np.ndarray, r_l: np.ndarray, dlen: np.ndarray, rho: float) -> np.ndarray:
    """Bradley-Terry logit with the fixed length term: r(w) - r(l) + rho * dlen.

    With rho > 0, a longer y_w is already 'explained' by the fixed term, so r is not rewarded
    for learning length (METHOD.md 3.2; the sign is the one that debiases).
    """
    return np.asarray(r_w) - np.asarray(r_l) + rho * np.asarray(dlen)


def bt_loss(logit: np.ndarray) -> np.ndarray:
    """Per-pair -log sigmoid(logit), computed stably."""
    logit = np.asarray(logit, dtype=np.float64)
    return np.logaddexp(0.0, -logit)


def normaliser(delta: np.ndarray, label: np.ndarray, gamma: float) -> np.ndarray:
    """q_k for every aspect: the gamma-quantile of |delta[:, k]| over pairs NOT labelled k.

    NaN gaps (aspect not scored on that pair) are ignored. An aspect whose gaps are all zero or
    missing gets q_k = inf, so its normalised gaps are 0 (it carries no signal), never NaN.
    """
    delta = np.asarray(delta, dtype=np.float64)
    label = np.asarray(label)
    _, K = delta.shape
    q = np.empty(K)
    for k in range(K):
        col = np.abs(delta[label != k, k])
        col = col[~np.isnan(col)]
        qk = float(np.quantile(col, gamma)) if len(col) else 0.0
        q[k] = qk if qk > 0 else np.inf
    return q


def normalise(delta: np.ndarray, q: np.ndarray) -> np.ndarray:
    """delta_n = clip(delta / q_k, -1, 1) column-wise; NaN stays NaN."""
    with np.errstate(over="ignore"):  # a huge ratio is clipped to +-1 anyway
        return np.clip(np.asarray(delta, dtype=np.float64) / np.asarray(q)[None, :], -1.0, 1.0)


def preference_divergence(delta_n: np.ndarray, label: np.ndarray,
                          weights: np.ndarray | None = None) -> np.ndarray:
    """PD[i] = - sum_{k' != label[i]} w_k' * delta_n[i, k'] (w = 1: the paper's equal weights).

    Missing gaps (NaN) contribute 0. Rounded to ``PD_DECIMALS`` (see there for why).
    """
    delta_n = np.nan_to_num(np.asarray(delta_n, dtype=np.float64), nan=0.0)
    N, K = delta_n.shape
    w = np.ones(K) if weights is None else np.asarray(weights, dtype=np.float64)
    weighted = delta_n * w[None, :]
    others = weighted.copy()
    others[np.arange(N), np.asarray(label)] = 0.0  # drop the own term exactly (no cancellation)
    return np.round(-others.sum(axis=1), PD_DECIMALS) + 0.0  # + 0.0: no negative zero


def pd_from_gaps(delta: np.ndarray, label: np.ndarray, gamma: float,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise raw gaps and compute PD. Returns (PD, delta_n, q)."""
    q = normaliser(delta, label, gamma)
    delta_n = normalise(delta, q)
    return preference_divergence(delta_n, label, weights), delta_n, q
