"""DFPO maths (hand-computed) and its plumbing through TRL's own DPOTrainer loss."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pdselect.align.dfpo import WORKED_EXAMPLE, dfpo_loss, dpo_margin, pd_as_ref_shift

torch.set_num_threads(1)


@pytest.mark.parametrize("pc,pr,rc,rr,beta,K,PD,expected", WORKED_EXAMPLE)
def test_worked_example(pc, pr, rc, rr, beta, K, PD, expected):
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    got = dfpo_loss(t(pc), t(pr), t(rc), t(rr), t(PD), beta, K)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_margin_by_hand():
    M = dpo_margin(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]),
                   torch.tensor([-11.0]), 0.1)
    assert M.item() == pytest.approx(0.2)


def test_k1_pd0_is_trl_sigmoid_formula():
    """TRL 1.16 (dpo_trainer.py, loss_type='sigmoid'): -logsigmoid(beta * delta_score)."""
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16, generator=g, dtype=torch.float64) * 20 for _ in range(4))
    beta = 0.3
    delta_score = (pc - rc) - (pr - rr)
    trl = -F.logsigmoid(beta * delta_score)
    assert torch.allclose(dfpo_loss(pc, pr, rc, rr, 0.0, beta, 1), trl)


def test_ref_shift_identity():
    """TRL's sigmoid loss with beta' = K*beta and shifted ref_chosen equals DFPO."""
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (torch.randn(32, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    PD = torch.randn(32, generator=g, dtype=torch.float64) * 2
    beta, K = 0.1, 4
    bprime = K * beta
    shifted = rc + pd_as_ref_shift(PD, beta, K)
    trl = -F.logsigmoid(bprime * ((pc - shifted) - (pr - rr)))
    assert torch.allclose(trl, dfpo_loss(pc, pr, rc, rr, PD, beta, K))


def test_extreme_values_finite_and_monotone_in_pd():
    big = torch.tensor([-1e4, 1e4], dtype=torch.float64)
    z = torch.zeros(2, dtype=torch.float64)
    out = dfpo_loss(big, -big, z, z, 0.0, 1.0, 3)
    assert torch.isfinite(out).all()
    one = torch.zeros(3)
    losses = dfpo_loss(one, one, one, one, torch.tensor([-1.0, 0.0, 1.0]), 0.1, 2)
    assert losses[0] > losses[1] > losses[2]  # consensus (PD<0) weighs more than conflict


# ----------------------------------------------------------------------------- through TRL
def _trainer_loss_vs_hand(tmp_path, loss: str, K: int, pds: list[float]):
    """Build the real trainer (full FT, reference precomputed on the start model), move the
    policy away from the reference, then compare TRL's compute_loss on one batch with
    dfpo_loss computed from log-probs we compute ourselves."""
    import pandas as pd
    from transformers import AutoModelForCausalLM

    from pdselect.align.dpo import build_trainer
    from pdselect.select.dpo_data import format_pairs
    from pdselect.config import AlignConfig
    from pdselect.align.implicit_reward import sequence_logps
    from pdselect.align.policy import tiny_llama

    path = tiny_llama(tmp_path)
    df = pd.DataFrame({"prompt": [f"say {w}" for w in ("a", "bb", "ccc", "dd")],
                       "chosen": ["yes, sure", "ok", "fine then", "y"],
                       "rejected": ["no", "never ever", "nah", "not now"], "pd": pds})
    cfg = AlignConfig(policy=str(path), loss=loss, lora=False, max_steps=1, batch_size=4,
                      max_length=64, lr=1e-3, device="cpu", beta=0.1)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    rows, _ = format_pairs(df if loss == "dfpo" else df.drop(columns="pd"), tok, cfg.max_length)
    trainer = build_trainer(rows, str(path), tok, cfg, tmp_path / "out", seed=0, K=K)
    ref = AutoModelForCausalLM.from_pretrained(path).eval()
    policy = trainer.model
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    keep = ["prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"]
    ds = trainer.train_dataset
    batch = trainer.data_collator([{k: ds[i][k] for k in keep} for i in range(len(ds))])
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, batch).item()
        lp = sequence_logps(policy, batch).double()
        ref_lp = sequence_logps(ref, batch).double()
    pc, pr = lp.chunk(2)
    rc, rr = ref_lp.chunk(2)
    pd_t = torch.tensor([ds[i]["pd"] for i in range(len(ds))] if loss == "dfpo" else [0.0] * 4,
                        dtype=torch.float64)
    hand = dfpo_loss(pc, pr, rc, rr, pd_t, cfg.beta, K).mean().item()
    M = dpo_margin(pc, pr, rc, rr, cfg.beta)
    return trl_loss, hand, M


def test_trl_dpo_equals_dfpo_k1_pd0(tmp_path):
    trl_loss, hand, M = _trainer_loss_vs_hand(tmp_path, "dpo", 1, [0.0] * 4)
    assert M.abs().max() > 1e-3  # the policy really moved away from the reference
    assert trl_loss == pytest.approx(hand, rel=1e-4, abs=1e-5)


def test_trl_dfpo_path_matches_hand(tmp_path):
    trl_loss, hand, M = _trainer_loss_vs_hand(tmp_path, "dfpo", 3, [-1.5, -0.2, 0.4, 2.0])
    assert M.abs().max() > 1e-3
    assert trl_loss == pytest.approx(hand, rel=1e-4, abs=1e-5)
    # and differs from plain DPO on the same log-probs (PD and K really enter)
    assert abs(trl_loss - F.softplus(-M).mean().item()) > 1e-3
