"""DPO implicit reward r(x, y) = β [log π(y|x) − log π_ref(y|x)] on held-out pairs.

    acc = implicit_reward_accuracy("runs/x/align/model", None, test_pairs, beta=0.1,
                                   max_length=256)["accuracy"]

Why: a policy trained on cleaner preference data should rank held-out pairs the way the OVERALL
(holistic) preference does, and this needs no generation and no judge model, so it is the cheap
downstream metric that runs on CPU. Pairs are tokenised exactly as align/dpo.py feeds TRL (chat
template, prompt cut from the left), so train and evaluation see the same sequences.

``implicit_reward_gaps`` gives the per-pair gap r(y_w) − r(y_l) for the implicit-reward-margin
selection baseline (arXiv 2508.04149: keep pairs with the smallest gap).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..select.dpo_data import encode_pair, format_pairs

logger = logging.getLogger(__name__)


def _load(model_or_dir: Any):
    """A model instance as is; a folder: full model, or LoRA adapter on its base."""
    if isinstance(model_or_dir, torch.nn.Module):
        return model_or_dir
    from transformers import AutoModelForCausalLM

    from .policy import resolve_policy

    path = Path(resolve_policy(str(model_or_dir)))
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def _tokenizer_for(model, model_or_dir: Any):
    from transformers import AutoTokenizer

    from .policy import resolve_policy

    src = None if isinstance(model_or_dir, torch.nn.Module) else resolve_policy(str(model_or_dir))
    if src is None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        src = base.config._name_or_path
    tok = AutoTokenizer.from_pretrained(str(src))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _collate(encs: list[dict], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """[chosen..., rejected...] right-padded, cut at max_length from the end like TRL's
    keep_start collator; completion_mask marks the tokens whose log-probs are summed."""
    seqs, masks = [], []
    for key in ("chosen_ids", "rejected_ids"):
        for e in encs:
            ids = (e["prompt_ids"] + e[key])[:max_length]
            m = ([0] * len(e["prompt_ids"]) + [1] * len(e[key]))[:max_length]
            seqs.append(ids)
            masks.append(m)
    L = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    comp = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        input_ids[i, :len(s)] = torch.tensor(s)
        attn[i, :len(s)] = 1
        comp[i, :len(m)] = torch.tensor(m)
    return {"input_ids": input_ids, "attention_mask": attn, "completion_mask": comp}


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over completion tokens; shape (rows,)."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device),
                   use_cache=False).logits[:, :-1].float()  # (R, L-1, V)
    target = ids[:, 1:]
    tok_lp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (tok_lp * batch["completion_mask"][:, 1:].to(device)).sum(-1).cpu()


# Reference log-probs of held-out pairs do not depend on the trained policy: when several
# policies from the same start are evaluated on the same pairs (the experiment grid), they are
# computed once. Key: (reference identity, max_length, prompt, chosen, rejected).
_REF_CACHE: dict[tuple, tuple[float, float]] = {}


def _ref_identity(policy, ref) -> str | None:
    """A stable name for the reference model, or None when it cannot be named safely."""
    if ref is None and hasattr(policy, "peft_config"):
        cfg = next(iter(policy.peft_config.values()))
        return f"base:{cfg.base_model_name_or_path}"
    if isinstance(ref, (str, Path)):
        return f"path:{ref}"
    return None


def _ref_logps(policy, ref, batch):
    if ref is not None:
        return sequence_logps(ref, batch)
    if not hasattr(policy, "disable_adapter"):
        raise ValueError("ref=None needs a PEFT policy (the reference is the base with adapters "
                         "disabled); pass the reference model or its folder otherwise.")
    with policy.disable_adapter():
        return sequence_logps(policy, batch)


def pair_rewards(policy: Any, ref: Any, pairs: pd.DataFrame, beta: float, max_length: int,
                 tokenizer=None, batch_size: int = 8, prompt_col: str = "prompt") -> pd.DataFrame:
    """Per pair: r_chosen, r_rejected, gap = r_chosen − r_rejected (index of ``pairs``)."""
    policy_m = _load(policy)
    ref_m = _load(ref).to(next(policy_m.parameters()).device) if ref is not None else None
    tok = tokenizer or _tokenizer_for(policy_m, policy)
    if prompt_col not in pairs.columns and "input" in pairs.columns:
        prompt_col = "input"  # PairTable naming (data/schema.py)
    df = pairs[[prompt_col, "chosen", "rejected"]].rename(columns={prompt_col: "prompt"})
    examples, _ = format_pairs(df, tok, max_length)
    encs = [encode_pair(tok, e["prompt"], e["chosen"], e["rejected"]) for e in examples]
    was_training = policy_m.training
    policy_m.eval()
    if ref_m is not None:
        ref_m.eval()
    r_c, r_r = [], []
    ident = _ref_identity(policy_m, ref)
    with torch.inference_mode():
        for i in range(0, len(encs), batch_size):
            batch = _collate(encs[i:i + batch_size], tok.pad_token_id, max_length)
            keys = [(ident, max_length, *map(str, df.iloc[j].tolist()))
                    for j in range(i, min(i + batch_size, len(encs)))]
            if ident is not None and all(k in _REF_CACHE for k in keys):
                ref_lp = torch.tensor([_REF_CACHE[k][0] for k in keys]
                                      + [_REF_CACHE[k][1] for k in keys], dtype=torch.float32)
            else:
                ref_lp = _ref_logps(policy_m, ref_m, batch)
                if ident is not None:
                    n = len(keys)
                    _REF_CACHE.update({k: (float(ref_lp[j]), float(ref_lp[n + j]))
                                       for j, k in enumerate(keys)})
            logr = beta * (sequence_logps(policy_m, batch) - ref_lp)
            c, r = logr.chunk(2)
            r_c.append(c)
            r_r.append(r)
    policy_m.train(was_training)
    r_c_t, r_r_t = torch.cat(r_c).double().numpy(), torch.cat(r_r).double().numpy()
    return pd.DataFrame({"r_chosen": r_c_t, "r_rejected": r_r_t, "gap": r_c_t - r_r_t},
                        index=pairs.index)


def implicit_reward_accuracy(model_dir_or_model: Any, ref: Any, pairs: pd.DataFrame, beta: float,
                             max_length: int, *, label_col: str | None = "h_agrees_overall",
                             tokenizer=None, batch_size: int = 8) -> dict:
    """Share of held-out pairs where r(overall-preferred) > r(other); ties count as wrong.

    ``label_col`` says whether ``chosen`` is the OVERALL winner: 1 = yes, 0 = no (the pair is
    flipped), NaN = overall tie/unknown (skipped, counted). ``None``: chosen is the winner.
    ``ref=None`` with a LoRA policy uses the base model (adapters disabled)."""
    df = pairs
    n_skipped = 0
    if label_col is not None:
        if label_col not in pairs.columns:
            raise KeyError(f"pairs have no label column {label_col!r}; pass label_col=None if "
                           "'chosen' is already the overall winner.")
        lab = pd.to_numeric(pairs[label_col], errors="coerce")
        keep = lab.notna()
        n_skipped = int((~keep).sum())
        df = pairs.loc[keep].copy()
        flip = lab[keep].to_numpy() == 0
        c, r = df["chosen"].to_numpy(copy=True), df["rejected"].to_numpy(copy=True)
        df["chosen"], df["rejected"] = np.where(flip, r, c), np.where(flip, c, r)
    if len(df) == 0:
        return {"accuracy": float("nan"), "n": 0, "n_skipped": n_skipped, "beta": beta}
    rw = pair_rewards(model_dir_or_model, ref, df, beta, max_length, tokenizer, batch_size)
    return {
        "accuracy": float((rw["gap"] > 0).mean()), "n": len(rw), "n_skipped": n_skipped,
        "n_ties": int((rw["gap"] == 0).sum()), "mean_margin": float(rw["gap"].mean()),
        "mean_reward_chosen": float(rw["r_chosen"].mean()),
        "mean_reward_rejected": float(rw["r_rejected"].mean()), "beta": beta,
    }


def implicit_reward_gaps(policy: Any, ref: Any, pairs: pd.DataFrame, beta: float,
                         max_length: int, **kw) -> pd.Series:
    """gap(z) = r(x, y_w) − r(x, y_l) with the pair's OWN labels (no overall label needed, so
    usable at selection time); the 2508.04149 baseline keeps the smallest gaps."""
    return pair_rewards(policy, ref, pairs, beta, max_length, **kw)["gap"]
