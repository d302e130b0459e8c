"""The cheap preference probe: batched heads equal separate fits; accuracy maths."""

import numpy as np
import pandas as pd
import pytest

from pdselect.experiments.probe import overall_accuracy, probe_accuracy, probe_many


def toy(n_inputs=30, seed=0):
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=8)
    texts = {f"r{i}": rng.normal(size=8) for i in range(n_inputs * 3)}

    def feats(inputs, responses):
        return np.stack([texts[r] for r in responses])

    rows = []
    for i in range(n_inputs):
        a, b = f"r{3 * i}", f"r{3 * i + 1}"
        better = texts[a] @ w_true > texts[b] @ w_true
        rows.append({"pair_id": f"p{i}", "input": f"x{i}", "chosen": a, "rejected": b,
                     "h_overall_delta": 1.0 if better else -1.0})
    return feats, pd.DataFrame(rows)


def test_overall_accuracy_counts_ties_half_and_skips_overall_ties():
    acc = overall_accuracy(np.array([1.0, 0.0, 2.0, 5.0]), np.array([0.0, 1.0, 2.0, 0.0]),
                           np.array([1.0, 1.0, 1.0, 0.0]))
    assert acc == pytest.approx((1 + 0 + 0.5) / 3)


def test_batched_heads_equal_separate_fits():
    feats, pairs = toy()
    train, test = pairs.iloc[:20].reset_index(drop=True), pairs.iloc[20:].reset_index(drop=True)
    flipped = train.iloc[5:15].copy()
    flipped[["chosen", "rejected"]] = flipped[["rejected", "chosen"]].to_numpy()
    subsets = {"first": train.iloc[:10], "flipped": flipped, "all": train}
    many = probe_many(feats, train, subsets, test, [1e-2, 1e-4], seed=0)
    for name, sub in subsets.items():
        alone = probe_accuracy(feats, sub, test, [1e-2, 1e-4], seed=0)
        assert many[name] == pytest.approx(alone), name


def test_probe_learns_and_label_noise_hurts():
    feats, pairs = toy(n_inputs=200, seed=1)
    # orient training pairs by the truth: chosen = overall winner
    tr = pairs.iloc[:150].copy()
    flip = tr["h_overall_delta"] < 0
    tr.loc[flip, ["chosen", "rejected"]] = tr.loc[flip, ["rejected", "chosen"]].to_numpy()
    test = pairs.iloc[150:].reset_index(drop=True)
    clean = probe_accuracy(feats, tr, test, [1e-4], seed=0)[1e-4]
    noisy = tr.copy()
    noisy.loc[noisy.index[:60], ["chosen", "rejected"]] = \
        noisy.loc[noisy.index[:60], ["rejected", "chosen"]].to_numpy()
    assert clean > 0.9
    assert probe_accuracy(feats, noisy, test, [1e-4], seed=0)[1e-4] < clean


def test_dfpo_offset_discounts_conflicting_pairs():
    """Pairs whose label the other aspects contradict (PD >> 0) barely move a DFPO head."""
    feats, pairs = toy(n_inputs=200, seed=2)
    tr = pairs.iloc[:150].copy()
    flip = tr["h_overall_delta"] < 0
    tr.loc[flip, ["chosen", "rejected"]] = tr.loc[flip, ["rejected", "chosen"]].to_numpy()
    noisy = tr.index[:70]  # 70 of 150 labels flipped: a plain learner is badly misled
    tr.loc[noisy, ["chosen", "rejected"]] = tr.loc[noisy, ["rejected", "chosen"]].to_numpy()
    pd_ = np.where(tr.index.isin(noisy), 8.0, -1.0)
    test = pairs.iloc[150:].reset_index(drop=True)
    plain = probe_accuracy(feats, tr, test, [1e-4], seed=0)[1e-4]
    dfpo = probe_accuracy(feats, tr, test, [1e-4], seed=0, offset=pd_, K=1)[1e-4]
    assert dfpo > plain + 0.1
