"""Proxy reward models (frozen_encoder backend): BT maths, resampling, learning, length term."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from test_embed import make_tiny_bert  # noqa: E402

from pdselect import pd as pdm  # noqa: E402
from pdselect.config import ProxyConfig  # noqa: E402
from pdselect.errors import StageError  # noqa: E402
from pdselect.reward import (load_proxy_models, train_proxy_models,  # noqa: E402
                             train_unified_model)
from pdselect.reward.base import plan_jobs, split_by_input, unique_texts  # noqa: E402
from pdselect.reward.heads import PairGroup, bt_logit_t, bt_loss_t, fit_heads  # noqa: E402

WORDS = "the a of and to in is it that was for on are with as".split()


@pytest.fixture(scope="module")
def tiny_bert64(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert64"), hidden=64)


def synthetic_pairs(n_inputs: int = 300, seed: int = 0, rho_true: float = 2.0) -> pd.DataFrame:
    """Aspect A: y_w carries praise words, y_l insults (separable, length random).
    Aspect L: nothing but length decides, P(longer wins) = sigmoid(rho_true * dlen_words/10)."""
    rng = np.random.default_rng(seed)

    def filler(n):
        return " ".join(rng.choice(WORDS, int(n)))

    rows = []
    for i in range(n_inputs):
        inp = f"question number {i} " + filler(5)
        n1, n2 = rng.integers(5, 30, 2)
        rows.append(dict(input_id=f"i{i}", input=inp, chosen=filler(n1) + " excellent wonderful",
                         rejected=filler(n2) + " terrible awful", aspect="A"))
        n1, n2 = rng.integers(3, 60, 2)
        a, b = filler(n1), filler(n2)
        p_a = 1 / (1 + math.exp(-rho_true * (n1 - n2) / 10.0))
        w, l = (a, b) if rng.random() < p_a else (b, a)
        rows.append(dict(input_id=f"i{i}", input=inp, chosen=w, rejected=l, aspect="L"))
    df = pd.DataFrame(rows)
    df["pair_id"] = [f"p{i}" for i in range(len(df))]
    df["split"] = "train"
    df["len_chosen"] = df["chosen"].str.len()
    df["len_rejected"] = df["rejected"].str.len()
    return df


def _cfg(enc: Path, tmp: Path, **kw) -> ProxyConfig:
    base = dict(encoder=str(enc), cache_dir=str(tmp), length_scale=10.0, rho=0.0, epochs=300)
    base.update(kw)
    return ProxyConfig(**base)


# ----------------------------------------------------------------------------- maths
def test_bt_logit_and_loss_hand_computed():
    # r_w = 1.0, r_l = 0.5, y_w 30 tokens, y_l 10 tokens, length_scale 100 -> dlen = 0.2
    # rho = 0.5: logit = 1.0 - 0.5 + 0.5 * 0.2 = 0.6; loss = log(1 + e^-0.6) = 0.437488
    logit = pdm.bt_logit(np.array([1.0]), np.array([0.5]), np.array([0.2]), 0.5)
    assert logit[0] == pytest.approx(0.6)
    assert pdm.bt_loss(logit)[0] == pytest.approx(0.4374879, abs=1e-6)
    # torch twins agree with pd.py on random values, including large |logit|
    rng = np.random.default_rng(0)
    rw, rl, dl = rng.normal(size=(3, 50)) * 10
    t = bt_loss_t(bt_logit_t(*(torch.tensor(v) for v in (rw, rl, dl)), 0.7)).numpy()
    np.testing.assert_allclose(t, pdm.bt_loss(pdm.bt_logit(rw, rl, dl, 0.7)), rtol=1e-10)


def test_length_balanced_resampling_shares():
    pairs = pd.DataFrame({"aspect": ["a"] * 100, "input_id": [f"i{i // 2}" for i in range(100)]})
    dlen = np.where(np.arange(100) < 80, 1.0, -1.0)    # 80% have the longer response chosen
    for tau, expect in ((None, 0.8), (1e6, 0.5), (0.5, pdm.length_balanced_share(0.8, 0.5))):
        cfg = ProxyConfig(tau=tau, p_r=1.0, val_fraction=0.0)
        jobs, info = plan_jobs(pairs, ["a"], dlen, cfg, seed=0, diagnostics=False)
        (job,) = jobs
        share = float(np.mean(job.dlen >= 0))
        assert share == pytest.approx(expect, abs=0.01), tau
        assert info["a"]["n_train"] == 100 and info["a"]["frac_longer_chosen"] == 0.8
    cfg = ProxyConfig(tau=1e6, p_r=0.5, val_fraction=0.0)
    jobs, _ = plan_jobs(pairs, ["a"], dlen, cfg, seed=0, diagnostics=False)
    assert len(jobs[0].rows) == 50 and np.mean(jobs[0].dlen >= 0) == 0.5


def test_validation_split_is_by_input():
    ids = np.array([f"i{i % 17}" for i in range(200)])
    fit, val = split_by_input(ids, 0.2, np.random.default_rng(1))
    assert len(fit) + len(val) == 200 and len(val) > 0
    assert not set(ids[fit]) & set(ids[val])
    assert len(set(ids[val])) == round(0.2 * 17)


def test_unique_texts_roundtrip():
    pairs = pd.DataFrame({"input": ["x", "x", "y"], "chosen": ["a", "b", "a"],
                          "rejected": ["b", "c", "b"]})
    table, cw, cl = unique_texts(pairs)
    assert len(table) == 5  # (x,a) (x,b) (y,a) (x,c) (y,b)
    for i, row in pairs.iterrows():
        assert tuple(table.iloc[cw[i]]) == (row.input, row.chosen)
        assert tuple(table.iloc[cl[i]]) == (row.input, row.rejected)


# ----------------------------------------------------------------------------- heads alone
def test_heads_learn_preference_but_not_explained_length():
    """Feature 0 is the true quality, feature 1 is length. Labels follow
    sigmoid(3*q_gap + 2*dlen). With rho=2 the head puts ~no weight on length; with rho=0 it does."""
    rng = np.random.default_rng(0)
    n = 4000
    X = rng.normal(size=(2 * n, 4)).astype(np.float32)
    w, l = np.arange(n), np.arange(n, 2 * n)
    dlen = X[w, 1] - X[l, 1]
    p = 1 / (1 + np.exp(-(3 * (X[w, 0] - X[l, 0]) + 2 * dlen)))
    flip = rng.random(n) > p
    w2, l2 = np.where(flip, l, w), np.where(flip, w, l)
    d2 = X[w2, 1] - X[l2, 1]
    groups = [PairGroup(0, w2, l2, d2, 2.0), PairGroup(1, w2, l2, d2, 0.0)]
    heads = fit_heads(X, groups, 2, l2=0.0, epochs=400, lr=0.05)
    W = heads.w.detach().numpy()
    assert W[0, 0] == pytest.approx(3.0, abs=0.35)      # rho=2: quality recovered ...
    assert abs(W[0, 1]) < 0.3                           # ... and length NOT learned
    assert W[1, 1] == pytest.approx(2.0, abs=0.35)      # rho=0: length absorbed into r


# ----------------------------------------------------------------------------- end to end
def test_separable_and_length_only_preferences(tiny_bert64, tmp_path):
    df = synthetic_pairs()
    m0 = train_proxy_models(df, ["A", "L"], _cfg(tiny_bert64, tmp_path, rho=0.0), seed=0)
    m2 = train_proxy_models(df, ["A", "L"], _cfg(tiny_bert64, tmp_path, rho=2.0), seed=0)
    # A: separable -> held-out accuracy ~1 without length term
    assert m0.metrics["A"]["val_accuracy"] >= 0.95
    assert m0.metrics["A"]["n_val"] > 0 and m0.metrics["A"]["n_train"] == 300
    # L: length-only. rho=0 learns length; rho=2 (the generating value) does not
    assert m0.metrics["L"]["length_corr_after"] > 0.8
    assert m2.metrics["L"]["length_corr_before"] == pytest.approx(
        m0.metrics["L"]["length_corr_after"], abs=1e-6)
    assert abs(m2.metrics["L"]["length_corr_after"]) < 0.3
    for a in ("A", "L"):
        for key in ("n_train", "n_val", "val_accuracy", "length_corr_before", "length_corr_after",
                    "frac_longer_chosen", "refit"):
            assert key in m2.metrics[a]
    g = m2.gaps(df)
    assert g.shape == (len(df), 2) and np.isfinite(g).all()


def test_gaps_save_load_and_single_pass(tiny_bert64, tmp_path):
    df = synthetic_pairs(n_inputs=40, seed=1)
    cfg = _cfg(tiny_bert64, tmp_path, rho=0.5, features="both", ensemble=2, head="mlp",
               hidden=16, epochs=50)
    models = train_proxy_models(df, ["A", "L"], cfg, seed=0, out_dir=tmp_path / "proxy")
    fresh = synthetic_pairs(n_inputs=10, seed=99)
    g = models.gaps(fresh)
    enc = models.scorer.store.encoder
    assert g.shape == (len(fresh), 2)
    # manual gaps via rewards() agree
    r_w = models.rewards(fresh.input.tolist(), fresh.chosen.tolist())
    r_l = models.rewards(fresh.input.tolist(), fresh.rejected.tolist())
    np.testing.assert_allclose(g, r_w - r_l, atol=1e-5)
    before = enc.n_encoded
    loaded = load_proxy_models(tmp_path / "proxy", cfg)
    np.testing.assert_allclose(loaded.gaps(fresh), g, atol=1e-5)
    assert loaded.scorer.store.encoder.n_encoded == 0   # all from the disk cache
    assert loaded.aspects == ["A", "L"] and loaded.metrics["A"]["n_train"] == 40
    assert enc.n_encoded == before


def test_gaps_embed_each_unique_text_once(tiny_bert64, tmp_path):
    df = synthetic_pairs(n_inputs=30, seed=2)
    cfg = _cfg(tiny_bert64, tmp_path / "c1", features="both", epochs=20)
    models = train_proxy_models(df, ["A", "L"], cfg, seed=0)
    enc = models.scorer.store.encoder
    fresh = synthetic_pairs(n_inputs=10, seed=123)
    before = enc.n_encoded
    models.gaps(fresh)
    n_joint = len(unique_texts(fresh)[0])
    n_resp = len(set(fresh.chosen) | set(fresh.rejected))
    assert enc.n_encoded - before == n_joint + n_resp
    models.gaps(fresh)
    assert enc.n_encoded - before == n_joint + n_resp


def test_unified_model_and_seed_determinism(tiny_bert64, tmp_path):
    df = synthetic_pairs(n_inputs=40, seed=3)
    cfg = _cfg(tiny_bert64, tmp_path, rho=0.5, tau=1.0, epochs=50)
    u1 = train_unified_model(df, cfg, seed=4)
    u2 = train_unified_model(df, cfg, seed=4)
    assert u1.aspects == ["unified"] and u1.metrics["unified"]["n_pairs"] == len(df)
    np.testing.assert_array_equal(u1.gaps(df), u2.gaps(df))
    assert u1.gaps(df).shape == (len(df), 1)


def test_too_few_pairs_is_a_clear_error(tiny_bert64, tmp_path):
    df = synthetic_pairs(n_inputs=20, seed=4)
    df = pd.concat([df, df.iloc[:3].assign(aspect="rare")])
    with pytest.raises(StageError, match=r"rare.*3"):
        train_proxy_models(df, ["A", "L", "rare"], _cfg(tiny_bert64, tmp_path), seed=0)
    with pytest.raises(StageError, match="missing"):
        train_proxy_models(df, ["A", "missing"], _cfg(tiny_bert64, tmp_path), seed=0)


def test_batched_linear_loss_equals_per_head_loop():
    from pdselect.reward.heads import BTHeads, _linear_step
    rng = np.random.default_rng(3)
    X = torch.tensor(rng.normal(size=(30, 5)), dtype=torch.float32)
    model = BTHeads(3, 5)
    with torch.no_grad():
        model.w.normal_()
    prepared = [(h, X[rng.integers(0, 30, n)], X[rng.integers(0, 30, n)],
                 torch.tensor(rng.normal(size=n), dtype=torch.float32), rho)
                for h, n, rho in ((0, 7, 0.5), (2, 11, 0.0))]
    loop = sum(bt_loss_t(bt_logit_t(model.head_reward(xw, h), model.head_reward(xl, h), dl, rho)
                         ).mean() + 0.1 * model.penalty(h) for h, xw, xl, dl, rho in prepared)
    assert _linear_step(model, prepared, 0.1)().item() == pytest.approx(loop.item(), rel=1e-5)


def test_without_diagnostics_the_scoring_models_are_the_same(tiny_bert64, tmp_path):
    """diagnostics=False (used by the experiment grid) skips only the metric fits."""
    df = synthetic_pairs(n_inputs=40, seed=5)
    cfg = _cfg(tiny_bert64, tmp_path, rho=0.5, tau=1.0, epochs=50)
    full = train_proxy_models(df, ["A", "L"], cfg, seed=1)
    lean = train_proxy_models(df, ["A", "L"], cfg, seed=1, diagnostics=False)
    np.testing.assert_allclose(lean.gaps(df), full.gaps(df), atol=1e-5)
    assert "val_accuracy" in full.metrics["A"] and "val_accuracy" not in lean.metrics.get("A", {})
