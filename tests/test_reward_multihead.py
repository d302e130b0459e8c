"""multihead backend: one backbone + N heads on tiny models built in code (CPU, offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).parent))
from test_embed import make_tiny_bert  # noqa: E402

from pdselect import pd as pdm  # noqa: E402
from pdselect.align.policy import tiny_llama  # noqa: E402
from pdselect.cli import main  # noqa: E402
from pdselect.config import ProxyConfig  # noqa: E402
from pdselect.config.schema import MultiheadConfig  # noqa: E402
from pdselect.reward import load_proxy_models, train_proxy_models  # noqa: E402
from pdselect.reward.base import Job, train_models, unique_texts  # noqa: E402
from pdselect.reward.multihead import (MultiheadBackend, save_joint,  # noqa: E402
                                       train_joint_models)
from pdselect.reward.multihead_net import MultiHeadNet, is_decoder  # noqa: E402
from pdselect.reward.multihead_train import (PairSet, fit_net, pair_losses,  # noqa: E402
                                             stop_loss)

WORDS = "the a of and to in is it that was for on are with as".split()


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("mh_bert"), hidden=32)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("mh_llama"), hidden=32)


def _cfg(path, **kw) -> ProxyConfig:
    mh = dict(epochs=2, lr=1e-3, head_lr=1e-2, batch_size=16)
    mh.update(kw.pop("mh", {}))
    base = dict(backend="multihead", model_path=str(path), length_scale=10.0, rho=0.0,
                max_input_tokens=12, max_response_tokens=40, batch_size=32,
                multihead=MultiheadConfig(**mh))
    base.update(kw)
    return ProxyConfig(**base)


def good_long_pairs(n_inputs: int, seed: int = 0) -> pd.DataFrame:
    """Aspect A: the chosen response contains 'good' (lengths random); aspect B: the longer
    response wins (no 'good' anywhere)."""
    rng = np.random.default_rng(seed)

    def words(n):
        return " ".join(rng.choice(WORDS, int(n)))

    rows = []
    for i in range(n_inputs):
        x = f"question {i} " + words(3)
        n1, n2 = rng.integers(2, 8, 2)
        pos = int(rng.integers(0, n1))
        good = " ".join(words(n1).split()[:pos] + ["good"] + words(n1).split()[pos:])
        rows.append(dict(input_id=f"i{i}", input=x, chosen=good, rejected=words(n2),
                         aspect="A"))
        short, extra = rng.integers(2, 6), rng.integers(4, 10)
        rows.append(dict(input_id=f"i{i}", input=x, chosen=words(short + extra),
                         rejected=words(short), aspect="B"))
    df = pd.DataFrame(rows)
    df["pair_id"] = [f"p{i}" for i in range(len(df))]
    df["split"] = "train"
    return df


# ----------------------------------------------------------------------------- the net
def test_backbone_kind_and_chat_framing(bert, llama):
    from transformers import AutoConfig

    assert not is_decoder(AutoConfig.from_pretrained(bert))
    assert is_decoder(AutoConfig.from_pretrained(llama))
    enc = MultiHeadNet.build(str(bert), 2, _cfg(bert))
    assert enc.framer.framing == "plain" and not enc.decoder
    text = enc.tok.decode(enc.framer.joint_ids(["alpha beta gamma"], ["one two"])[0])
    assert text.startswith("[CLS] alpha beta gamma [SEP] one two [SEP]"), text
    dec = MultiHeadNet.build(str(llama), 2, _cfg(llama, max_input_tokens=5,
                                                 max_response_tokens=3))
    assert dec.framer.framing == "chat" and dec.decoder
    text = dec.tok.decode(dec.framer.joint_ids(["0123456789"], ["abcdef"])[0])
    # chat template: input = user turn (left-truncated), response = assistant turn (right)
    assert text == "<|im_start|>user\n56789<|im_end|>\n<|im_start|>assistant\nabc<|im_end|>\n"


def _pairs_of(net, rows, heads, dlen, rho):
    ids = net.framer.joint_ids([r[0] for r in rows] * 2, [r[1] for r in rows] +
                               [r[2] for r in rows])
    n = len(rows)
    return ids, PairSet(np.array(heads), np.arange(n), np.arange(n, 2 * n), np.array(dlen, float),
                        np.full(n, float(rho)), np.array([max(len(ids[i]), len(ids[n + i]))
                                                          for i in range(n)]))


def test_a_pair_trains_only_its_own_head(bert):
    net = MultiHeadNet.build(str(bert), 3, _cfg(bert))
    torch.nn.init.normal_(net.heads.weight)  # non-zero heads: the backbone gets gradient too
    ids, ps = _pairs_of(net, [("q", "a good answer", "bad")], [1], [0.3], 0.5)
    pair_losses(net, ids, ps, np.array([0])).sum().backward()
    g = net.heads.weight.grad
    assert g[1].abs().sum() > 0
    assert torch.count_nonzero(g[0]) == 0 and torch.count_nonzero(g[2]) == 0


def test_length_term_sign_hand_computed(bert):
    net = MultiHeadNet.build(str(bert), 2, _cfg(bert))
    # heads at zero: r_w = r_l = 0, logit = rho * dlen = 0.5 * 0.2; loss = log(1 + e^-0.1)
    ids, ps = _pairs_of(net, [("q", "long chosen answer", "no")] * 2, [0, 1], [0.2, -0.2], 0.5)
    losses = pair_losses(net, ids, ps, np.array([0, 1])).detach().numpy()
    np.testing.assert_allclose(losses, [0.6443967, 0.7443967], atol=1e-6)
    # with trained-looking heads: the same logit as base.py's protocol (pd.bt_logit)
    torch.nn.init.normal_(net.heads.weight)
    net.eval()
    losses = pair_losses(net, ids, ps, np.array([0, 1])).detach().numpy()
    R = net.rewards(ids)
    ours = pdm.bt_loss(pdm.bt_logit(R[[0, 1], [0, 1]], R[[2, 3], [0, 1]], ps.dlen, 0.5))
    np.testing.assert_allclose(losses, ours, atol=1e-5)


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_reward_does_not_depend_on_batch_mates(which, bert, llama):
    path = bert if which == "bert" else llama
    net = MultiHeadNet.build(str(path), 2, _cfg(path))
    torch.nn.init.normal_(net.heads.weight)
    xs = [f"input {i}" for i in range(7)]
    ys = ["short", "a much longer response with many more words in it", "mid length one",
          "x", "another answer here", "yes no", "the last of the seven answers"]
    ids = net.framer.joint_ids(xs, ys)
    together = net.rewards(ids, batch_size=7)
    alone = np.stack([net.rewards([i], batch_size=1)[0] for i in ids])
    np.testing.assert_allclose(together, alone, atol=1e-5)


# ----------------------------------------------------------------------------- training
def test_learns_each_aspect_on_held_out_inputs(bert):
    df = good_long_pairs(160, seed=1)
    train, test = df[df.input_id.isin([f"i{i}" for i in range(120)])], \
        df[~df.input_id.isin([f"i{i}" for i in range(120)])]
    cfg = _cfg(bert, mh=dict(epochs=6, head_lr=3e-2))
    models = train_models(train, ["A", "B"], cfg, 0, MultiheadBackend(cfg), diagnostics=False)
    g = models.gaps(test)
    for k, a in enumerate(["A", "B"]):
        acc = float((g[test.aspect.to_numpy() == a, k] > 0).mean())
        assert acc > 0.8, (a, acc)


def test_early_stopping_keeps_the_best_evaluation(bert):
    df = good_long_pairs(40, seed=2)
    rng = np.random.default_rng(0)
    flip = rng.random(len(df)) < 0.5  # pure noise labels: held-out loss soon rises
    df.loc[flip, ["chosen", "rejected"]] = df.loc[flip, ["rejected", "chosen"]].to_numpy()
    cfg = _cfg(bert, mh=dict(epochs=6, lr=3e-3, head_lr=3e-2, batch_size=8, eval_every=2,
                             patience=0, stop_fraction=0.3))
    net = MultiHeadNet.build(str(bert), 1, cfg)
    table, cw, cl = unique_texts(df)
    ids = net.framer.joint_ids(table["input"].tolist(), table["response"].tolist())
    job = Job("final/A", "A", np.arange(len(df)), np.zeros(len(df)), 0.0)
    from pdselect.reward.multihead_train import pair_set, stop_mask

    ps = pair_set([job], cw, cl, ids)
    held = stop_mask(df["input_id"].to_numpy(), 0.3, 0)
    hist = fit_net(net, ids, ps.take(~held), ps.take(held), cfg.multihead, 0)
    losses = [e["stop_loss"] for e in hist["evals"]]
    assert len(losses) == hist["steps"] // 2 and hist["best_stop_loss"] == min(losses)
    assert hist["best_step"] < hist["steps"]   # the last evaluation was not the best here
    assert stop_loss(net, ids, ps.take(held), 64) == pytest.approx(min(losses), abs=1e-6)


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_save_load_round_trip_in_a_new_process(which, bert, llama, tmp_path):
    path = bert if which == "bert" else llama
    df = good_long_pairs(24, seed=3)
    cfg = _cfg(path, lora=which == "llama", rho=0.5, mh=dict(epochs=1))
    models = train_proxy_models(df, ["A", "B"], cfg, seed=0, out_dir=tmp_path / "p",
                                diagnostics=False)
    g = models.gaps(df)
    np.testing.assert_allclose(load_proxy_models(tmp_path / "p", cfg).gaps(df), g, atol=1e-6)
    df.to_parquet(tmp_path / "df.parquet")
    code = ("import sys, numpy as np, pandas as pd; from pdselect.config import ProxyConfig;"
            "from pdselect.reward import load_proxy_models;"
            f"m = load_proxy_models({str(tmp_path / 'p')!r}, ProxyConfig());"
            f"np.save({str(tmp_path / 'g.npy')!r}, m.gaps(pd.read_parquet("
            f"{str(tmp_path / 'df.parquet')!r})))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), g, atol=1e-6)


def test_joint_unified_head_and_cross_fit(bert, tmp_path, monkeypatch):
    df = good_long_pairs(30, seed=4)
    cfg = _cfg(bert, cross_fit=2, mh=dict(epochs=1))
    fits = []
    orig = MultiheadBackend.fit
    monkeypatch.setattr(MultiheadBackend, "fit",
                        lambda self, p, jobs, *a, **k: fits.append(len(jobs)) or
                        orig(self, p, jobs, *a, **k))
    models, unified = train_joint_models(df, ["A", "B"], cfg, seed=0)
    assert fits == [3, 3]    # F = 2 folds, each ONE training of A, B and unified heads
    assert models.metrics["A"]["val_split"].startswith("out of fold")
    save_joint(models, unified, tmp_path)
    meta = json.loads((tmp_path / "unified" / "fold-0" / "multihead.json").read_text())
    assert meta["net"] == "../../aspects/fold-0/multihead"   # shared, not copied
    assert not (tmp_path / "unified" / "fold-0" / "multihead").exists()
    g, u = models.gaps(df), unified.gaps(df)
    assert g.shape == (len(df), 2) and u.shape == (len(df), 1)
    np.testing.assert_allclose(load_proxy_models(tmp_path / "aspects", cfg).gaps(df), g,
                               atol=1e-6)
    np.testing.assert_allclose(load_proxy_models(tmp_path / "unified", cfg).gaps(df), u,
                               atol=1e-6)


def test_pipeline_run_with_multihead_backend(bert, tmp_path):
    run = tmp_path / "run"
    over = [f"run_dir={run}", "proxy.backend=multihead", f"proxy.model_path={bert}",
            "proxy.max_input_tokens=24", "proxy.max_response_tokens=24",
            "proxy.multihead.epochs=1", "proxy.multihead.lr=1e-3", "proxy.multihead.batch_size=32"]
    over.append("proxy.cross_fit=0")  # one network: proxy/aspects/multihead (folds: above)
    assert main(["-q", "run", "-c", "configs/examples/usr_topical_chat.yaml"] + over) == 0
    assert (run / "report.md").exists() and (run / "score" / "scores.parquet").exists()
    assert (run / "proxy" / "aspects" / "multihead" / "net.json").exists()
    meta = json.loads((run / "proxy" / "unified" / "multihead.json").read_text())
    assert meta["net"] == "../aspects/multihead" and meta["names"] == ["final/unified"]
    metrics = json.loads((run / "proxy" / "metrics.json").read_text())
    assert set(metrics) >= {"aspects", "unified"} and metrics["unified"]["unified"]["n_pairs"]
    scores = pd.read_parquet(run / "score" / "scores.parquet")
    assert scores["margin"].notna().all() and scores["pd"].notna().all()


def test_config_checks_of_the_multihead_block():
    from pdselect.config import load_config
    from pdselect.errors import ConfigError

    cfg = load_config(None, ["proxy.backend=multihead", "proxy.multihead.epochs=2",
                             "proxy.lora=true"])
    assert cfg.proxy.multihead.epochs == 2 and cfg.proxy.lora
    with pytest.raises(ConfigError, match="proxy.multihead.lr"):
        load_config(None, ["proxy.backend=multihead", "proxy.multihead.lr=0"])
    with pytest.raises(ConfigError, match="stop_fraction"):
        load_config(None, ["proxy.backend=multihead", "proxy.multihead.stop_fraction=0.9"])
    with pytest.raises(ConfigError, match="applies to proxy.backend=multihead only"):
        load_config(None, ["proxy.multihead.epochs=2"])   # frozen_encoder would ignore it


def test_frozen_head_settings_are_refused_with_the_multihead_backend():
    import pytest

    from pdselect.config import load_config
    from pdselect.errors import ConfigError

    for key in ("proxy.ensemble=3", "proxy.head=mlp", "proxy.l2=0.1"):
        with pytest.raises(ConfigError, match=key.split("=")[0]):
            load_config(None, ["proxy.backend=multihead", key]).validate()
