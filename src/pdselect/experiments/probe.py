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



def overall_correct(r_chosen: np.ndarray, r_rejected: np.ndarray,
                    overall_delta: np.ndarray) -> np.ndarray:
    """Per pair: 1 when the reward order matches the overall preference, 0 when not, 1/2 on a
    reward tie, NaN on an overall tie or unknown overall (left out of every accuracy)."""
    od = np.asarray(overall_delta, dtype=np.float64)
    d = (np.asarray(r_chosen, dtype=np.float64) - np.asarray(r_rejected, dtype=np.float64)) \
        * np.sign(od)
    out = (d > 0) + 0.5 * (d == 0)
    return np.where(np.isnan(od) | (od == 0), np.nan, out)


def overall_accuracy(r_chosen: np.ndarray, r_rejected: np.ndarray,
                     overall_delta: np.ndarray) -> float:
    """Share of pairs whose reward order matches the overall preference (overall ties excluded;
    a reward tie counts 1/2)."""
    return _mean(overall_correct(r_chosen, r_rejected, overall_delta))


def _mean(c: np.ndarray) -> float:
    c = c[~np.isnan(c)]
    return float(c.mean()) if len(c) else float("nan")


def preferred_length_gap(pairs: pd.DataFrame, overall_delta) -> np.ndarray:
    """Length (characters) of the overall-preferred response minus the other's, per pair
    (NaN on an overall tie): the covariate of the length-controlled metrics."""
    od = np.asarray(overall_delta, dtype=np.float64)
    gap = pairs["len_chosen"].to_numpy(np.float64) - pairs["len_rejected"].to_numpy(np.float64)
    return np.where(np.isnan(od) | (od == 0), np.nan, gap * np.sign(od))


def length_rule_correct(len_gap: np.ndarray) -> np.ndarray:
    """The baseline "the longer response wins": 1 / 0 / 1/2 on equal lengths, NaN kept."""
    g = np.asarray(len_gap, dtype=np.float64)
    return np.where(np.isnan(g), np.nan, (g > 0) + 0.5 * (g == 0))


def length_columns(prefix: str, correct: np.ndarray, len_gap: np.ndarray) -> dict:
    """``prefix`` + _acc_longer / _acc_shorter / _balanced / _lenadj (stats.length_controlled):
    accuracy where the preferred response is the longer / the shorter one, their mean, and
    the accuracy a logistic fit on the length difference predicts at equal lengths."""
    from ..stats import length_controlled

    lc = length_controlled(correct, len_gap)
    return {f"{prefix}_{k}": lc[src] for k, src in LENGTH_KEYS.items()}


# the baseline row "the longer response wins" on the held-out pairs (nothing is trained)
LENGTH_RULE = "LONGER"
LENGTH_KEYS = {"acc_longer": "acc_longer", "acc_shorter": "acc_shorter",
               "balanced": "balanced", "lenadj": "adjusted"}


def _index(rows: dict, inputs, responses) -> np.ndarray:
    """Positions of (input, response) in the shared feature table, adding new ones."""
    return np.array([rows.setdefault((x, y), len(rows)) for x, y in zip(inputs, responses)],
                    dtype=np.int64)


def fit_probe_heads(D: np.ndarray, A: np.ndarray, S: np.ndarray, off: np.ndarray,
                    scale: np.ndarray, l2: float, epochs: int, lr: float,
                    seed: int) -> np.ndarray:
    """H linear BT heads on one shared table of P pair differences D (P, d), in one matmul a step.

    Head h minimises  sum_p A[p,h] * -log sigmoid(scale[h] * S[p,h] * D[p] . w_h + off[p,h])
                      + l2 * ||w_h||^2
    with A[p,h] = 1/n_h on the pairs of subset h (0 elsewhere) and S = -1 on relabelled pairs:
    the same loss as fitting each head alone (see pd.bt_loss), for a fraction of the time.
    Returns W (H, d).
    """
    import torch

    torch.manual_seed(seed)
    Dt = torch.as_tensor(D, dtype=torch.float32)
    At, St = torch.as_tensor(A, dtype=torch.float32), torch.as_tensor(S, dtype=torch.float32)
    Ot, Kt = torch.as_tensor(off, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32)
    W = torch.zeros(A.shape[1], D.shape[1], requires_grad=True)  # convex: a zero start is fine
    opt = torch.optim.Adam([W], lr=lr)
    for _ in range(int(epochs)):
        opt.zero_grad(set_to_none=True)
        logit = Kt[None, :] * St * (Dt @ W.T) + Ot                              # (P, H)
        loss = (At * torch.nn.functional.softplus(-logit)).sum() + l2 * (W ** 2).sum()
        loss.backward()
        opt.step()
    return W.detach().numpy()


def probe_many(features_fn, train: pd.DataFrame, subsets: dict, test: pd.DataFrame,
               l2s: list[float], seed: int, epochs: int = 300, lr: float = 0.01,
               offsets: dict | None = None, K: int = 1, detail: bool = False) -> dict:
    """Probe accuracy of many training subsets at once: {name: {l2: accuracy on test}}
    (``detail``: {name: {l2: per-test-pair correctness}}, see :func:`overall_correct`).

    ``train`` is the public train table (the reference orientation, with ``pair_id``); every
    subset is a table of some of its pairs, possibly relabelled (chosen/rejected swapped).
    Every unique text is featurised once and all heads train together (one fit per L2).
    Subsets named in ``offsets`` use the DFPO objective -log sigmoid(K * dr + PD).
    """
    offsets = offsets or {}
    rows: dict = {}
    cw, cl = _index(rows, train["input"], train["chosen"]), _index(rows, train["input"],
                                                                    train["rejected"])
    t_w, t_l = _index(rows, test["input"], test["chosen"]), _index(rows, test["input"],
                                                                   test["rejected"])
    keys = list(rows)
    X = np.asarray(features_fn([k[0] for k in keys], [k[1] for k in keys]), dtype=np.float64)
    D = X[cw] - X[cl]
    pos = pd.Series(np.arange(len(train)), index=train["pair_id"].to_numpy())
    names = list(subsets)
    P, H = len(train), len(names)
    A, S, O = np.zeros((P, H)), np.ones((P, H)), np.zeros((P, H))
    scale = np.ones(H)
    for h, n in enumerate(names):
        sub = subsets[n]
        r = pos.loc[sub["pair_id"].to_numpy()].to_numpy()
        A[r, h] = 1.0 / max(1, len(r))
        S[r, h] = np.where(sub["chosen"].to_numpy() == train["chosen"].to_numpy()[r], 1.0, -1.0)
        if n in offsets:
            O[r, h], scale[h] = np.asarray(offsets[n], dtype=np.float64), float(K)
    od = test["h_overall_delta"].to_numpy()
    out: dict = {n: {} for n in names}
    for l2 in l2s:
        W = fit_probe_heads(D, A, S, O, scale, l2, epochs, lr, seed)
        R = X @ W.T
        for h, n in enumerate(names):
            c = overall_correct(R[t_w, h], R[t_l, h], od)
            out[n][float(l2)] = c if detail else _mean(c)
    return out


def probe_accuracy(features_fn, train: pd.DataFrame, test: pd.DataFrame, l2s: list[float],
                   seed: int, epochs: int = 300, lr: float = 0.01,
                   offset: np.ndarray | None = None, K: int = 1) -> dict[float, float]:
    """Train one head per L2 strength on ``train`` (public columns input/chosen/rejected) and
    return {l2: overall accuracy on ``test``} (``test`` needs ``h_overall_delta``).

    ``features_fn(inputs, responses) -> (n, d)`` gives frozen features (cached embeddings).
    ``offset`` (per train pair) switches to the DFPO objective with ``K`` aspects.
    """
    if "pair_id" not in train.columns:
        train = train.assign(pair_id=np.arange(len(train)).astype(str))
    offsets = {"train": offset} if offset is not None else None
    return probe_many(features_fn, train, {"train": train}, test, l2s, seed, epochs, lr,
                      offsets, K)["train"]
