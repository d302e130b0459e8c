"""trl backend: one sequence-classification reward model per aspect, fine-tuned (fully or with
LoRA) by TRL's ``RewardTrainer`` (wrapped, not subclassed).

Length term. TRL 1.16's RewardTrainer reads an optional per-pair ``margin`` column and computes
``-log sigmoid(r(chosen) - r(rejected) - margin)`` (trl/trainer/reward_trainer.py,
``compute_loss``). Passing ``margin = -rho * dlen`` therefore gives exactly our
``logit = r_w - r_l + rho * dlen`` (:func:`trl_margin`; tests/test_reward_trl.py checks the sign
against the trainer's own loss).

Truncation. RewardTrainer DROPS pairs longer than ``max_length``; we hand it pre-tokenised
``chosen_ids`` / ``rejected_ids`` (input left-truncated, response right-truncated, framed by
:class:`pdselect.reward.embed.TextFramer`), so nothing is dropped and training and scoring see the same
token sequences.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .embed import TextFramer, pad_batch
from ..errors import StageError
from .base import Job, unique_texts

logger = logging.getLogger(__name__)
MODELS_DIR = "trl_models"
META = "trl_models.json"


def trl_margin(dlen: np.ndarray, rho: float) -> np.ndarray:
    """The ``margin`` column that makes TRL's loss -log sigmoid(r_w - r_l + rho * dlen)."""
    return -float(rho) * np.asarray(dlen, dtype=np.float64)


def load_tokenizer(model_path: str):
    """Tokenizer with the eos/pad tokens RewardTrainer and sequence classifiers need."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.eos_token is None:
        if tok.sep_token is None:
            raise StageError(f"proxy.model_path={model_path}: tokenizer has neither an eos nor a "
                             "sep token. Fix: use a model whose tokenizer defines one.")
        tok.eos_token = tok.sep_token  # BERT-style: [SEP] ends the sequence
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _device_args(cfg) -> dict:
    import torch

    if cfg.device.startswith("cuda") and torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": False}


def fit_reward_model(model, tok, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
                     margin: np.ndarray, cfg, seed: int, work_dir: Path,
                     progress: bool = False, max_steps: int = -1):
    """Train ``model`` (num_labels=1) with RewardTrainer; returns the trainer (model trained)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    ds = Dataset.from_dict({"chosen_ids": chosen_ids, "rejected_ids": rejected_ids,
                            "margin": [float(m) for m in margin]})
    args = RewardConfig(
        output_dir=str(work_dir), seed=int(seed), learning_rate=cfg.trl_lr,
        num_train_epochs=cfg.trl_epochs, max_steps=max_steps,
        per_device_train_batch_size=cfg.trl_batch_size, max_length=None,  # we truncated
        activation_checkpointing=False,  # (old name gradient_checkpointing, on in TRL) small proxies
        save_strategy="no", report_to="none", logging_steps=10, disable_tqdm=not progress,
        dataloader_num_workers=0, **_device_args(cfg))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig, TaskType

        # SEQ_CLS keeps the new score/classifier head fully trainable (modules_to_save)
        peft_config = LoraConfig(task_type=TaskType.SEQ_CLS, r=16, lora_alpha=32,
                                 lora_dropout=0.0)
    model.config.pad_token_id = tok.pad_token_id
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                            peft_config=peft_config)
    if not progress:  # library code logs; the Trainer's printer would print every log dict
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
    trainer.train()
    hist = [h for h in trainer.state.log_history if "train_loss" in h]
    if hist:
        logger.info("reward model trained: loss %.4f, %d steps", hist[-1]["train_loss"],
                    trainer.state.global_step)
    return trainer


def _load_model(path: Path, base_path: str, lora: bool, pad_id: int, device: str):
    from transformers import AutoModelForSequenceClassification

    if lora:
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1)
        base.config.pad_token_id = pad_id
        model = PeftModel.from_pretrained(base, str(path))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
        model.config.pad_token_id = pad_id
    return model.to(device).eval()


def score_ids(model, ids: list[list[int]], pad_id: int, batch_size: int, device: str) -> np.ndarray:
    """(n,) scalar rewards; right padding, batches of length-sorted sequences."""
    import torch

    out = np.empty(len(ids), dtype=np.float64)
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            idx = order[s: s + batch_size]
            inp, mask = pad_batch(ids, idx, pad_id)
            logits = model(input_ids=inp.to(device), attention_mask=mask.to(device)).logits
            out[idx] = logits[:, 0].float().cpu().numpy()
    return out


class TRLScorer:
    """One fine-tuned reward model per aspect (saved folders), loaded on first use."""

    backend = "trl"

    def __init__(self, dirs: dict[str, Path], cfg, framer: TextFramer, base_path: str,
                 lora: bool | None = None):
        self.dirs, self.cfg, self.framer, self.base_path = dict(dirs), cfg, framer, base_path
        self.lora = cfg.lora if lora is None else bool(lora)  # how the folders were saved
        self._models: dict[str, object] = {}

    def _model(self, name: str):
        if name not in self._models:
            self._models[name] = _load_model(self.dirs[name], self.base_path, self.lora,
                                             self.framer.tok.pad_token_id, self._device())
        return self._models[name]

    def _device(self) -> str:
        return "cpu" if _device_args(self.cfg)["use_cpu"] else self.cfg.device

    def rewards_of(self, names: list[str], inputs, responses) -> np.ndarray:
        ids = self.framer.joint_ids(list(inputs), list(responses))
        cols = [score_ids(self._model(n), ids, self.framer.tok.pad_token_id,
                          self.cfg.batch_size, self._device()) for n in names]
        return np.stack(cols, axis=1) if cols else np.zeros((len(ids), 0))

    def rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        return self.rewards_of(list(self.dirs), inputs, responses)

    def save(self, out_dir: Path) -> None:
        dest_root = Path(out_dir) / MODELS_DIR
        saved = {}
        for i, (name, src) in enumerate(self.dirs.items()):
            dest = dest_root / f"{i:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name.split('/')[-1])}"
            if Path(src).resolve() != dest.resolve():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            saved[name] = dest.name
        meta = {"models": saved, "base_path": self.base_path, "lora": self.lora,
                "max_input_tokens": self.framer.max_in,
                "max_response_tokens": self.framer.max_resp}
        (Path(out_dir) / META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, out_dir: Path, cfg) -> "TRLScorer":
        meta = json.loads((Path(out_dir) / META).read_text())
        tok = load_tokenizer(meta["base_path"])
        framer = TextFramer(tok, meta["max_input_tokens"], meta["max_response_tokens"])
        dirs = {n: Path(out_dir) / MODELS_DIR / d for n, d in meta["models"].items()}
        return cls(dirs, cfg, framer, meta["base_path"], meta["lora"])


class TRLFitted:
    def __init__(self, scorer: TRLScorer, tmp: tempfile.TemporaryDirectory | None):
        self._scorer, self._tmp = scorer, tmp  # keep the temp folder alive with the object

    def rewards(self, names, inputs, responses) -> np.ndarray:
        return self._scorer.rewards_of(names, inputs, responses)

    def scorer(self, names: list[str]) -> TRLScorer:
        s = TRLScorer({n: self._scorer.dirs[n] for n in names}, self._scorer.cfg,
                      self._scorer.framer, self._scorer.base_path, self._scorer.lora)
        s._keepalive = self._tmp  # noqa: SLF001 - model folders live in the temp dir
        return s


class TRLBackend:
    name = "trl"
    cheap = False  # one fine-tune per aspect: no extra rho=0 diagnostic fits

    def __init__(self, cfg, out_dir: Path | None = None):
        if not cfg.model_path:
            raise StageError("proxy.backend=trl needs proxy.model_path (a local sequence-"
                             "classification model folder or hub id). Fix: set proxy.model_path, "
                             "or use proxy.backend=frozen_encoder.")
        self.cfg, self.out_dir = cfg, out_dir
        self.tok = load_tokenizer(cfg.model_path)
        self.framer = TextFramer(self.tok, cfg.max_input_tokens, cfg.max_response_tokens)

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return self.framer.n_tokens(texts)

    def fit(self, pairs: pd.DataFrame, jobs: list[Job], seed: int,
            progress: bool = False) -> TRLFitted:
        from transformers import AutoModelForSequenceClassification

        tmp = tempfile.TemporaryDirectory(prefix="pdselect-trl-")
        table, cw, cl = unique_texts(pairs)
        ids = self.framer.joint_ids(table["input"].tolist(), table["response"].tolist())
        dirs = {}
        for i, job in enumerate(jobs):
            logger.info("trl proxy %s: %d pairs", job.name, len(job.rows))
            model = AutoModelForSequenceClassification.from_pretrained(self.cfg.model_path,
                                                                       num_labels=1)
            trainer = fit_reward_model(
                model, self.tok, [ids[c] for c in cw[job.rows]], [ids[c] for c in cl[job.rows]],
                trl_margin(job.dlen, job.rho), self.cfg, seed, Path(tmp.name) / f"run{i}",
                progress)
            dirs[job.name] = Path(tmp.name) / f"model{i}"
            trainer.model.save_pretrained(str(dirs[job.name]))
            del trainer, model
        return TRLFitted(TRLScorer(dirs, self.cfg, self.framer, self.cfg.model_path), tmp)
