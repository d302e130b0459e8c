"""Align a policy on a preference file with TRL's DPOTrainer: plain DPO or DFPO (METHOD.md §2).

    metrics = align(Path("runs/x/selected.parquet"), cfg.align, Path("runs/x/align"), seed=0)

Input: Parquet or JSONL with ``prompt``, ``chosen``, ``rejected`` (plain strings, or already
conversational message lists), plus ``pd`` for ``loss="dfpo"``. Output in ``out_dir``:
``model/`` (LoRA adapter or full model, with the tokenizer) and ``metrics.json``.

Choices and why:
- Conversational format (prompt = one user message, completions = assistant messages): TRL 1.16
  then applies the policy's chat template itself and splits prompt/completion at the common
  token prefix, so the completion ends with the template's end-of-turn token.
- Prompts are cut from the LEFT (the latest dialogue turn is what the answer responds to) so
  prompt + longer completion fits ``max_length``; TRL alone would only cut the completion's end.
  A prompt keeps at least a quarter of ``max_length``; completions longer than the rest are cut
  at the end by TRL's collator.
- Reference log-probs are precomputed (one pass before training) unless LoRA is used with an
  explicit ``max_steps``: for full fine-tuning this avoids TRL reloading a second copy of the
  model from disk; with LoRA the reference is the base model with adapters disabled either way.
- DFPO needs no fork of TRL's loss. With β' = K·β, TRL's sigmoid loss −log σ(β'·Δ) where
  Δ = [log π(y_w) − log π_ref(y_w)] − [log π(y_l) − log π_ref(y_l)] equals
  −log σ(K·M_θ + PD) once log π_ref(y_w) is shifted by −PD/β' (``dfpo.pd_as_ref_shift``).
  TRL 1.16 computes the loss inline in ``DPOTrainer._compute_loss`` (300 lines, no hook), but it
  reads precomputed reference log-probs from the dataset column ``ref_chosen_logps``; so DFPO =
  stock DPOTrainer + ``precompute_ref_log_probs=True`` + one ``Dataset.map`` on
  ``trainer.train_dataset`` after construction. No subclass, no copied code. Side effect: in
  DFPO runs TRL's logged ``rewards/chosen`` includes PD and ``rewards/margins`` is the DFPO
  logit K·M_θ + PD (reported as such in metrics.json).

Multi-GPU (NOT tested: the dev machines have no GPU). Launch any script that calls ``align``
(or the CLI's align stage once it exists) under accelerate:
    accelerate launch --config_file configs/accelerate_multi_gpu.yaml my_align_script.py
Trainer shards batches over processes (``batch_size`` is per device); TRL gathers the
precomputed reference log-probs across ranks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import AlignConfig
from .dfpo import pd_as_ref_shift
from ..select.dpo_data import format_pairs, read_pairs
from ..errors import ConfigError, InputError

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- training
def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_K(K: int | None, cfg: AlignConfig, df: pd.DataFrame) -> int:
    """K (number of aspects) for DFPO: argument, else cfg.dfpo_k (if the config grows it), else
    a constant ``K`` column in the data."""
    K = K or getattr(cfg, "dfpo_k", None)
    if K is None and "K" in df.columns and df["K"].nunique() == 1:
        K = int(df["K"].iloc[0])
    if not K or K < 1:
        raise ConfigError("align.loss", "dfpo needs K, the number of aspects.",
                          "pass align(..., K=<n aspects>) or add a constant K column.")
    return int(K)


def _check_pd(df: pd.DataFrame, path: Path) -> None:
    if "pd" not in df.columns:
        raise InputError(path, "loss=dfpo needs a 'pd' column", field="pd",
                         fix="use the scored (not selected) table, or set align.loss=dpo")
    vals = pd.to_numeric(df["pd"], errors="coerce")
    bad = df.index[~vals.map(math.isfinite)]
    if len(bad):
        raise InputError(path, f"{len(bad)} non-finite pd values (first row {bad[0]})", field="pd")


def build_trainer(ds_rows: list[dict], model_path: str, tok, cfg: AlignConfig, out_dir: Path,
                  seed: int, K: int = 1):
    """A stock TRL DPOTrainer configured from ``cfg``; for DFPO the PD shift is folded into the
    precomputed reference log-probs (see module docstring)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    device = resolve_device(cfg.device)
    dfpo = cfg.loss == "dfpo"
    precompute = dfpo or not cfg.lora or cfg.max_steps <= 0
    beta_trl = K * cfg.beta if dfpo else cfg.beta  # β' = K·β, see pd_as_ref_shift
    on_gpu = device.startswith("cuda")
    args = DPOConfig(
        output_dir=str(out_dir / "trainer"), beta=beta_trl, loss_type=["sigmoid"],
        learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length, precompute_ref_log_probs=precompute,
        use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(), fp16=False,
        gradient_checkpointing=on_gpu and not cfg.lora, logging_steps=1, save_strategy="no",
        report_to=[], seed=seed, data_seed=seed, dataloader_num_workers=0)
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(ds_rows),
                         processing_class=tok, peft_config=peft_config)
    if dfpo:
        trainer.train_dataset = fold_pd_into_ref(trainer.train_dataset, cfg.beta, K)
    return trainer


def fold_pd_into_ref(ds, beta: float, K: int):
    """ref_chosen_logps += −PD/(K·β): makes TRL's sigmoid loss (β' = K·β) equal DFPO."""
    import torch

    def shift(batch):
        pd_t = torch.tensor(batch["pd"], dtype=torch.float64)
        ref = torch.tensor(batch["ref_chosen_logps"], dtype=torch.float64)
        return {"ref_chosen_logps": (ref + pd_as_ref_shift(pd_t, beta, K)).tolist()}

    return ds.map(shift, batched=True)


def align(dataset_path: Path, cfg: AlignConfig, out_dir: Path, seed: int,
          eval_pairs: pd.DataFrame | None = None, *, K: int | None = None) -> dict:
    """Train DPO (or DFPO) on ``dataset_path``; save the model and metrics.json; return metrics.

    ``eval_pairs`` (held-out, with an overall label column, see implicit_reward) adds the DPO
    implicit-reward accuracy of the trained policy to the metrics."""
    from transformers import AutoTokenizer

    from .policy import CHATML_TEMPLATE, resolve_policy

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df, K = _read_for_loss(Path(dataset_path), cfg, K)
    model_path = resolve_policy(cfg.policy)
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        logger.warning("policy %s has no chat template; using plain ChatML", model_path)
        tok.chat_template = CHATML_TEMPLATE
    rows, n_cut = format_pairs(df, tok, cfg.max_length)
    logger.info("align: %d pairs (%d prompts cut from the left), loss=%s K=%d lora=%s",
                len(rows), n_cut, cfg.loss, K, cfg.lora)
    trainer = build_trainer(rows, model_path, tok, cfg, out_dir, seed, K)
    t_setup = time.perf_counter() - t0
    result = trainer.train()
    model_dir = out_dir / "model"
    trainer.save_model(str(model_dir))
    metrics = _train_metrics(cfg, trainer, result, model_path=model_path, model_dir=model_dir,
                             seed=seed, K=K, n_rows=len(rows), n_cut=n_cut, t_setup=t_setup)
    if eval_pairs is not None:
        metrics["eval"] = _implicit_reward_eval(trainer, cfg, model_path, eval_pairs, tok)
    metrics["wall_s"] = round(time.perf_counter() - t0, 3)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


def _read_for_loss(path: Path, cfg: AlignConfig, K: int | None) -> tuple[pd.DataFrame, int]:
    """The pairs at ``path`` and K: DFPO checks ``pd`` and resolves K; DPO drops ``pd``, K=1."""
    df = read_pairs(path)
    if cfg.loss == "dfpo":
        _check_pd(df, path)
        K = _resolve_K(K, cfg, df)
    else:
        df = df.drop(columns=[c for c in ("pd",) if c in df.columns])
        K = 1
    return df, K


def _train_metrics(cfg: AlignConfig, trainer, result, *, model_path: str, model_dir: Path,
                   seed: int, K: int, n_rows: int, n_cut: int, t_setup: float) -> dict[str, Any]:
    """metrics.json's training part: the run's settings, sizes, loss curve and timings."""
    hist = trainer.state.log_history
    steps = trainer.state.global_step
    runtime = float(result.metrics.get("train_runtime", float("nan")))
    return {
        "loss_type": cfg.loss, "K": K, "beta": cfg.beta, "beta_trl": trainer.beta,
        "lora": cfg.lora, "policy": model_path, "model_dir": str(model_dir), "seed": seed,
        "n_train": len(trainer.train_dataset), "n_prompts_truncated": n_cut,
        # TRL drops pairs whose prompt alone fills max_length (only possible for multi-turn
        # prompts whose earlier turns are too long: only the last turn is cut)
        "n_dropped_too_long": n_rows - len(trainer.train_dataset),
        "steps": steps, "train_loss": result.training_loss,
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in hist if "loss" in h],
        "setup_s": round(t_setup, 3), "train_runtime_s": runtime,
        "s_per_step": runtime / steps if steps else None,
        "precomputed_ref": trainer.precompute_ref_logps,
        "note": ("dfpo: TRL's rewards/margins in the log history is the DFPO logit K*M+PD"
                 if cfg.loss == "dfpo" else ""),
        "log_history": hist,
    }


def _implicit_reward_eval(trainer, cfg: AlignConfig, model_path: str, eval_pairs: pd.DataFrame,
                          tok) -> dict:
    """The trained policy's DPO implicit-reward accuracy on the held-out ``eval_pairs``."""
    from .implicit_reward import implicit_reward_accuracy

    trainer.model.eval()
    # LoRA: the reference is the base with adapters disabled; full FT: reload the start.
    ref = None if cfg.lora else model_path
    return implicit_reward_accuracy(trainer.model, ref, eval_pairs, cfg.beta,
                                    cfg.max_length, tokenizer=tok)
