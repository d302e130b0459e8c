"""Cross-fitted proxies: folds by input, out-of-fold scoring, out-of-fold diagnostics with a
Wilson interval; reliability weights; proxy warnings."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))
from test_reward import _cfg, synthetic_pairs, tiny_bert64  # noqa: E402,F401

from pdselect.reward import load_proxy_models, train_proxy_models  # noqa: E402
from pdselect.reward.crossfit import CrossFitModels, fold_of  # noqa: E402
from pdselect.reward.diagnostics import (accuracy_interval, proxy_warnings,  # noqa: E402
                                         reliability_weights)


def test_wilson_interval_hand_computed():
    # p = 0.7, n = 100, z = 1.96: centre 0.6928, half-width 0.0882
    lo, hi = accuracy_interval(70, 100)
    assert lo == pytest.approx(0.6041, abs=1e-4) and hi == pytest.approx(0.7810, abs=1e-4)
    lo, hi = accuracy_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(np.isnan(accuracy_interval(0, 0)))


def test_folds_depend_on_the_input_id_only():
    ids = np.array([f"x{i}" for i in range(200)])
    f = fold_of(ids, 5, seed=3)
    assert set(f) == set(range(5))
    perm = np.random.default_rng(0).permutation(200)
    np.testing.assert_array_equal(fold_of(ids[perm], 5, 3), f[perm])
    assert not np.array_equal(fold_of(ids, 5, 4), f)          # the seed reshuffles


def test_every_pair_is_scored_by_models_that_never_saw_its_input(tiny_bert64, tmp_path):
    df = synthetic_pairs(n_inputs=60, seed=1)
    cfg = _cfg(tiny_bert64, tmp_path, cross_fit=3, epochs=60)
    models = train_proxy_models(df, ["A", "L"], cfg, seed=0, out_dir=tmp_path / "m")
    assert isinstance(models, CrossFitModels) and models.n_folds == 3
    fold = fold_of(df["input_id"].to_numpy(), 3, 0)
    gaps = models.gaps(df)
    for f, m in enumerate(models.folds):
        rows = np.flatnonzero(fold == f)
        # fold f's models give exactly these rows' gaps ...
        np.testing.assert_allclose(gaps[rows], m.gaps(df.iloc[rows]), rtol=0, atol=1e-12)
        # ... and were trained without them: retraining fold f on the other folds reproduces it
    again = train_proxy_models(df[fold != 0], ["A", "L"], _cfg(tiny_bert64, tmp_path, epochs=60),
                               seed=0, diagnostics=False)
    rows = np.flatnonzero(fold == 0)
    np.testing.assert_allclose(again.gaps(df.iloc[rows]), gaps[rows], rtol=0, atol=1e-9)
    # out-of-fold diagnostics over all of D_k, with an interval
    m = models.metrics["A"]
    assert m["n_val"] == int((df["aspect"] == "A").sum())
    lo, hi = m["val_accuracy_ci95"]
    assert lo <= m["val_accuracy"] <= hi and m["val_accuracy"] > 0.8   # separable aspect
    loaded = load_proxy_models(tmp_path / "m", cfg)
    assert isinstance(loaded, CrossFitModels)
    np.testing.assert_allclose(loaded.gaps(df), gaps, rtol=0, atol=1e-12)


def test_too_many_folds_for_the_inputs_is_a_clear_error(tiny_bert64, tmp_path):
    from pdselect.errors import StageError

    df = synthetic_pairs(n_inputs=3, seed=1)
    with pytest.raises(StageError, match="cross_fit=20.*fewer folds"):
        train_proxy_models(df, ["A", "L"], _cfg(tiny_bert64, tmp_path, cross_fit=20), seed=0)


def test_reliability_weights_and_warnings():
    metrics = {"good": {"val_accuracy": 0.8, "n_val": 200},
               "chance": {"val_accuracy": 0.52, "n_val": 100},
               "tiny": {"val_accuracy": 0.9, "n_val": 20},
               "none": {"val_accuracy": float("nan"), "n_val": 0}}
    w = reliability_weights(metrics, ["good", "chance", "tiny", "none", "absent"])
    # w = max(0, 2 * lo - 1), lo the Wilson lower bound: 0.9 on 20 pairs counts less than 0.8
    # on 200, and 0.52 on 100 (interval reaches 0.5) counts nothing
    lo_good, lo_tiny = accuracy_interval(160, 200)[0], accuracy_interval(18, 20)[0]
    np.testing.assert_allclose(w, [2 * lo_good - 1, 0.0, 2 * lo_tiny - 1, 1.0, 1.0])
    assert w[2] < w[0]
    text = " ".join(proxy_warnings(metrics))
    assert "'chance'" in text and "not better than chance" in text
    assert "'tiny'" in text and "only 20 pairs" in text
    assert "'none'" in text and "'good'" not in text


def test_uncertainty_shrink_soft_thresholds_member_gaps(tiny_bert64, tmp_path):
    """gap = sign(mean) * max(0, |mean| - c * std) over the M members, computed by hand."""
    df = synthetic_pairs(n_inputs=30, seed=2)
    cfg = _cfg(tiny_bert64, tmp_path, ensemble=3, epochs=40)
    plain = train_proxy_models(df, ["A", "L"], cfg, seed=0, diagnostics=False)
    R = plain.scorer.member_rewards(df["input"].tolist(), df["chosen"].tolist()) - \
        plain.scorer.member_rewards(df["input"].tolist(), df["rejected"].tolist())
    m, s = R.mean(-1), R.std(-1, ddof=1)
    np.testing.assert_allclose(plain.gaps(df), m, rtol=0, atol=1e-12)
    plain.shrink = 1.5
    want = np.sign(m) * np.maximum(0, np.abs(m) - 1.5 * s)
    np.testing.assert_allclose(plain.gaps(df), want, rtol=0, atol=1e-12)
    assert (want == 0).any() and (want != 0).any()
