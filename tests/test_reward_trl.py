"""trl backend: RewardTrainer wrapper on tiny sequence classifiers built in code (no downloads)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).parent))
from test_embed import _minilm_path  # noqa: E402
from test_reward import synthetic_pairs  # noqa: E402

from pdselect import pd as pdm  # noqa: E402
from pdselect.config import ProxyConfig  # noqa: E402
from pdselect.reward.embed import TextFramer  # noqa: E402
from pdselect.reward import load_proxy_models, train_proxy_models  # noqa: E402
from pdselect.reward.trl_backend import fit_reward_model, load_tokenizer, trl_margin  # noqa: E402

TOK_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _tiny(folder: Path, arch: str) -> Path:
    """Tiny randomly initialised BERT or Llama sequence classifier + the MiniLM tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOK_FILES:
        if (Path(_minilm_path()) / name).exists():
            shutil.copy(Path(_minilm_path()) / name, folder / name)
    torch.manual_seed(0)
    if arch == "bert":
        cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, num_labels=1)
        model = transformers.BertForSequenceClassification(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=2,
                                       intermediate_size=64, num_labels=1, pad_token_id=0)
        model = transformers.LlamaForSequenceClassification(cfg)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert_cls(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("bert_cls"), "bert")


@pytest.fixture(scope="module")
def tiny_llama_cls(tmp_path_factory):
    return _tiny(tmp_path_factory.mktemp("llama_cls"), "llama")


def _cfg(path, **kw):
    base = dict(backend="trl", model_path=str(path), lora=False, trl_epochs=1.0, trl_lr=1e-3,
                trl_batch_size=8, batch_size=16, max_input_tokens=16, max_response_tokens=24,
                length_scale=10.0, rho=0.5)
    base.update(kw)
    return ProxyConfig(**base)


def test_margin_sign_matches_our_logit(tiny_bert_cls, tmp_path):
    """RewardTrainer's own compute_loss with margin=trl_margin(dlen, rho) equals
    pd.bt_loss(pd.bt_logit(r_w, r_l, dlen, rho)) on the same batch."""
    tok = load_tokenizer(str(tiny_bert_cls))
    fr = TextFramer(tok, 8, 8)
    cw = fr.joint_ids(["q1", "q2"], ["a long good answer here", "yes"])
    cl = fr.joint_ids(["q1", "q2"], ["no", "a much longer and worse answer text"])
    dlen, rho = np.array([2.0, -3.0]), 0.7
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert_cls,
                                                                            num_labels=1)
    cfg = _cfg(tiny_bert_cls, trl_lr=0.0)
    trainer = fit_reward_model(model, tok, cw, cl, trl_margin(dlen, rho), cfg, 0, tmp_path,
                               max_steps=1)
    batch = trainer.data_collator([{"chosen_ids": c, "rejected_ids": r, "margin": m}
                                   for c, r, m in zip(cw, cl, trl_margin(dlen, rho))])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        logits = trainer.model(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).logits[:, 0].numpy()
    r_w, r_l = logits[:2], logits[2:]
    ours = pdm.bt_loss(pdm.bt_logit(r_w, r_l, dlen, rho)).mean()
    wrong = pdm.bt_loss(pdm.bt_logit(r_w, r_l, -dlen, rho)).mean()
    assert loss == pytest.approx(ours, rel=1e-5)
    assert abs(ours - wrong) > 1e-3   # the check distinguishes the two signs


@pytest.mark.parametrize("arch,lora", [("bert", False), ("llama", True)])
def test_trl_backend_trains_and_scores(arch, lora, tiny_bert_cls, tiny_llama_cls, tmp_path):
    path = tiny_bert_cls if arch == "bert" else tiny_llama_cls
    tok = load_tokenizer(str(path))
    assert tok.eos_token is not None and tok.pad_token is not None
    df = synthetic_pairs(n_inputs=12, seed=5)
    cfg = _cfg(path, lora=lora)
    # parameters change after a few steps (every trainable one, as TRL's own tests check)
    fr = TextFramer(tok, 16, 24)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = fit_reward_model(model, tok, fr.joint_ids(df.input, df.chosen),
                               fr.joint_ids(df.input, df.rejected), np.zeros(len(df)), cfg, 0,
                               tmp_path / "w", max_steps=3)
    losses = [h.get("loss", h.get("train_loss")) for h in trainer.state.log_history
              if "loss" in h or "train_loss" in h]
    assert losses and np.isfinite(losses).all() and trainer.state.global_step == 3
    after = {n: p.detach() for n, p in trainer.model.named_parameters()}
    if lora:
        lora_b = [p for n, p in after.items() if "lora_B" in n]
        assert lora_b and all(p.abs().sum() > 0 for p in lora_b)   # B starts at zero
        head = [p for n, p in after.items() if "modules_to_save" in n and "score" in n]
        assert head and not torch.equal(head[0], before["score.weight"])
    else:
        # the head's bias gets no gradient: a constant cancels in r(w) - r(l)
        unchanged = [k for k, v in after.items() if torch.equal(v, before[k])
                     and k != "classifier.bias"]
        assert not unchanged, unchanged
    # the whole backend: K models, gaps shape, save/load round trip
    models = train_proxy_models(df, ["A", "L"], cfg, seed=0, out_dir=tmp_path / "proxy")
    g = models.gaps(df)
    assert g.shape == (len(df), 2) and np.isfinite(g).all()
    m = models.metrics["A"]
    assert m["n_train"] == 12 and 0 <= m["val_accuracy"] <= 1 and np.isnan(m["length_corr_before"])
    loaded = load_proxy_models(tmp_path / "proxy", cfg)
    np.testing.assert_allclose(loaded.gaps(df), g, atol=1e-5)
