"""align / policy / implicit_reward on a tiny Llama built in code (offline, CPU, seconds).

The real SmolLM2 path is opt-in: ``pytest -m slow tests/test_align.py``."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from pdselect.align.dpo import align, build_trainer
from pdselect.select.dpo_data import encode_pair, format_pairs, read_pairs
from pdselect.config import AlignConfig
from pdselect.errors import InputError
from pdselect.align.implicit_reward import implicit_reward_accuracy, implicit_reward_gaps
from pdselect.align.policy import tiny_llama

torch.set_num_threads(1)

PAIRS = pd.DataFrame({
    "prompt": [f"question {i}: what is {i} plus {i}?" for i in range(8)],
    "chosen": [f"It is {2 * i}." for i in range(8)],
    "rejected": ["no idea, go away"] * 8,
    "pd": [-0.5, 0.5] * 4,
})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    path = tiny_llama(tmp_path_factory.mktemp("tiny"))
    return path, AutoTokenizer.from_pretrained(path)


def _cfg(path, **kw) -> AlignConfig:
    base = dict(policy=str(path), lora=False, max_steps=3, batch_size=2, max_length=64,
                lr=1e-2, device="cpu", beta=0.1)
    return AlignConfig(**{**base, **kw})


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ----------------------------------------------------------------------------- data
def test_tiny_tokenizer_roundtrip_and_template(tiny):
    _, tok = tiny
    text = "Hello, world! 42"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    enc = encode_pair(tok, [{"role": "user", "content": "hi"}],
                      [{"role": "assistant", "content": "yes"}],
                      [{"role": "assistant", "content": "no"}])
    assert tok.decode(enc["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert tok.decode(enc["chosen_ids"]) == "yes<|im_end|>\n"


def test_prompt_truncated_from_left(tiny):
    _, tok = tiny
    df = pd.DataFrame({"prompt": ["OLD " * 40 + "the latest turn"], "chosen": ["short"],
                       "rejected": ["a bit longer answer"]})
    rows, n_cut = format_pairs(df, tok, max_length=64)
    assert n_cut == 1
    content = rows[0]["prompt"][0]["content"]
    assert content.endswith("the latest turn") and len(content) < 160
    enc = encode_pair(tok, rows[0]["prompt"], rows[0]["chosen"], rows[0]["rejected"])
    assert len(enc["prompt_ids"]) + len(enc["rejected_ids"]) <= 64
    short, n = format_pairs(df.assign(prompt="hi"), tok, 64)
    assert n == 0 and short[0]["prompt"][0]["content"] == "hi"


def test_read_pairs_errors(tmp_path):
    p = tmp_path / "x.jsonl"
    PAIRS.drop(columns="rejected").to_json(p, orient="records", lines=True)
    with pytest.raises(InputError, match="rejected"):
        read_pairs(p)
    with pytest.raises(InputError, match="does not exist"):
        read_pairs(tmp_path / "missing.parquet")


# ----------------------------------------------------------------------------- training
def test_full_ft_every_parameter_changes(tiny, tmp_path):
    path, tok = tiny
    rows, _ = format_pairs(PAIRS.drop(columns="pd"), tok, 64)
    trainer = build_trainer(rows, str(path), tok, _cfg(path), tmp_path, seed=0)
    before = _snapshot(trainer.model)
    out = trainer.train()
    assert math.isfinite(out.training_loss)
    for n, p in trainer.model.named_parameters():
        assert p.requires_grad, n
        assert not torch.equal(before[n], p.detach()), f"{n} did not change"


def test_lora_changes_adapters_only(tiny, tmp_path):
    path, tok = tiny
    rows, _ = format_pairs(PAIRS.drop(columns="pd"), tok, 64)
    trainer = build_trainer(rows, str(path), tok, _cfg(path, lora=True, lora_r=4), tmp_path,
                            seed=0)
    before = _snapshot(trainer.model)
    out = trainer.train()
    assert math.isfinite(out.training_loss)
    n_lora = 0
    for n, p in trainer.model.named_parameters():
        if "lora_" in n:
            n_lora += 1
            assert p.requires_grad and not torch.equal(before[n], p.detach()), n
        else:
            assert not p.requires_grad and torch.equal(before[n], p.detach()), n
    assert n_lora > 0


def test_align_end_to_end_dpo_and_dfpo(tiny, tmp_path):
    path, _ = tiny
    data = tmp_path / "sel.parquet"
    PAIRS.to_parquet(data)
    m = align(data, _cfg(path, lora=True, lora_r=4), tmp_path / "dpo", seed=0)
    saved = json.loads((tmp_path / "dpo" / "metrics.json").read_text())
    assert saved["steps"] == 3 and len(saved["loss_curve"]) == 3
    assert saved["loss_curve"][0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert (tmp_path / "dpo" / "model" / "adapter_config.json").exists()
    assert m["K"] == 1 and m["s_per_step"] > 0

    m2 = align(data, _cfg(path, lora=True, lora_r=4, loss="dfpo"), tmp_path / "dfpo", seed=0, K=2)
    assert m2["beta_trl"] == pytest.approx(0.2) and m2["precomputed_ref"]
    assert all(math.isfinite(p["loss"]) for p in m2["loss_curve"])
    with pytest.raises(Exception, match="K"):
        align(data, _cfg(path, loss="dfpo"), tmp_path / "nok", seed=0)


# ----------------------------------------------------------------------------- implicit reward
def test_implicit_reward_known_answers(tiny, tmp_path):
    path, _ = tiny
    data = tmp_path / "train.jsonl"
    PAIRS.drop(columns="pd").to_json(data, orient="records", lines=True)
    ev = PAIRS.drop(columns="pd").assign(h_agrees_overall=1.0)
    m = align(data, _cfg(path, max_steps=6), tmp_path / "full", seed=0,
              eval_pairs=ev.assign(h_agrees_overall=[1.0, 0.0] + [1.0] * 6))
    # trained on these very pairs: 7 counted, the flipped one is the only miss
    assert m["eval"]["n"] == 8 and m["eval"]["accuracy"] == pytest.approx(7 / 8)
    model_dir = tmp_path / "full" / "model"
    ok = implicit_reward_accuracy(model_dir, path, ev, 0.1, 64)
    flipped = implicit_reward_accuracy(model_dir, path, ev.assign(h_agrees_overall=0.0), 0.1, 64)
    assert ok["accuracy"] == 1.0 and flipped["accuracy"] == 0.0
    skipped = implicit_reward_accuracy(model_dir, path, ev.assign(h_agrees_overall=float("nan")),
                                       0.1, 64)
    assert skipped["n"] == 0 and skipped["n_skipped"] == 8
    same = implicit_reward_accuracy(path, path, ev, 0.1, 64)  # policy == reference: all ties
    assert same["n_ties"] == 8 and same["accuracy"] == 0.0
    gaps = implicit_reward_gaps(model_dir, path, PAIRS, 0.1, 64, prompt_col="prompt")
    assert (gaps > 0).all() and list(gaps.index) == list(PAIRS.index)


def test_implicit_reward_lora_adapter_folder(tiny, tmp_path):
    path, _ = tiny
    data = tmp_path / "train.parquet"
    PAIRS.to_parquet(data)
    align(data, _cfg(path, lora=True, lora_r=4, max_steps=2), tmp_path / "lora", seed=0)
    acc = implicit_reward_accuracy(tmp_path / "lora" / "model", None, PAIRS, 0.1, 64,
                                   label_col=None)
    assert acc["n"] == 8 and 0.0 <= acc["accuracy"] <= 1.0 and acc["n_ties"] < 8


# ----------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_smollm2_convert_and_two_lora_steps(tmp_path):
    from pdselect.align.policy import ensure_smollm2

    folder = ensure_smollm2()
    cfg_json = json.loads((folder / "config.json").read_text())
    assert cfg_json["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in cfg_json
    data = tmp_path / "sel.parquet"
    PAIRS.to_parquet(data)
    cfg = AlignConfig(policy="smollm2", lora=True, max_steps=2, batch_size=2, max_length=128,
                      device="cpu")
    m = align(data, cfg, tmp_path / "out", seed=0, eval_pairs=PAIRS.assign(h_agrees_overall=1.0))
    assert m["steps"] == 2 and all(math.isfinite(p["loss"]) for p in m["loss_curve"])


def test_reference_logps_of_heldout_pairs_are_computed_once(tmp_path, monkeypatch):
    """Policies from one start share the reference pass on the same held-out pairs."""
    import pdselect.align.implicit_reward as IR
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pdselect.align.policy import tiny_llama

    path = tiny_llama(tmp_path / "tiny")
    base = AutoModelForCausalLM.from_pretrained(path)
    policy = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    pairs = pd.DataFrame({"prompt": ["hi", "yo", "ok"], "chosen": ["a", "bb", "c"],
                          "rejected": ["dd", "e", "ff"], "h_agrees_overall": [1.0, 0.0, 1.0]})
    calls = {"n": 0}
    real = IR._ref_logps

    def counting(*a):
        calls["n"] += 1
        return real(*a)

    monkeypatch.setattr(IR, "_ref_logps", counting)
    IR._REF_CACHE.clear()
    first = IR.implicit_reward_accuracy(policy, None, pairs, 0.1, 64)
    assert calls["n"] == 1
    second = IR.implicit_reward_accuracy(policy, None, pairs, 0.1, 64)
    assert calls["n"] == 1 and second == first
