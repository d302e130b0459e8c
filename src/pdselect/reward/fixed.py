"""Score-only reward sources: rewards that exist before pdselect runs (the user's own scores,
an off-the-shelf reward model). Nothing is trained, so the per-aspect protocol of base.py
(length-balanced resampling, rho, validation fits) does not apply; what still applies is the
diagnostic that makes a reward trustworthy for PD:

    aspect k's reward agrees with aspect k's own labels on D_k

measured on EVERY train pair labelled k (no pair was used to fit anything, so all of D_k is
held out), reported as ``val_accuracy`` with its 95% Wilson interval, exactly where a trained
proxy reports its held-out accuracy, so the report, the chance warnings and reliability weights
work unchanged whatever the reward's origin.

The margin baseline's unified reward: the source's own holistic reward when one is mapped (the
key ``unified``), else the mean of the K aspect rewards, each standardised by its mean and
standard deviation over the train texts (:class:`StandardisedMean`; the statistics are fixed
at the proxy stage and saved, so a text's unified reward never depends on what it is scored
with).

    models = score_only_models(train_pairs, aspects, scorer, cfg, seed)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import StageError
from .base import ProxyModels, unique_texts
from .diagnostics import label_agreement

logger = logging.getLogger(__name__)

UNIFIED = "unified"
STANDARDISER_FILE = "unified_standardiser.json"


def agreement_metrics(gaps: np.ndarray, pairs: pd.DataFrame, aspects: list[str],
                      backend: str, lengths: np.ndarray | None = None) -> dict[str, dict]:
    """Per aspect k: share of D_k whose reward gap on k is > 0 (ties count as wrong, as for a
    trained proxy), its Wilson interval, and the gap's correlation with the length difference
    (how much of the reward is 'longer is better'): diagnostics.label_agreement over all of
    D_k, since nothing was trained on it."""
    out = label_agreement(gaps, pairs, aspects, lengths)
    for m in out.values():
        m.update({"n_train": 0, "backend": backend, "val_split": "every pair of the aspect "
                  "(score-only: nothing was trained on it)"})
    return out


class StandardisedMean:
    """Unified reward = mean over aspects of (r_k - mu_k) / sd_k, statistics fixed at fit."""

    def __init__(self, inner, mu: np.ndarray, sd: np.ndarray):
        self.inner, self.mu, self.sd = inner, np.asarray(mu, float), np.asarray(sd, float)
        self.backend = inner.backend

    @classmethod
    def fit(cls, inner, inputs, responses) -> "StandardisedMean":
        r = np.asarray(inner.rewards(inputs, responses), dtype=np.float64)
        sd = r.std(0)
        return cls(inner, r.mean(0), np.where(sd > 0, sd, 1.0))

    def rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        r = np.asarray(self.inner.rewards(inputs, responses, progress), dtype=np.float64)
        return ((r - self.mu) / self.sd).mean(1, keepdims=True)

    def save(self, out_dir: Path) -> None:
        self.inner.save(out_dir)
        (Path(out_dir) / STANDARDISER_FILE).write_text(json.dumps(
            {"mu": self.mu.tolist(), "sd": self.sd.tolist()}))

    @classmethod
    def load(cls, inner, out_dir: Path) -> "StandardisedMean":
        d = json.loads((Path(out_dir) / STANDARDISER_FILE).read_text())
        return cls(inner, d["mu"], d["sd"])


def score_only_models(pairs: pd.DataFrame, aspects: list[str], scorer, cfg, seed: int,
                      lengths_fn=None) -> ProxyModels:
    """ProxyModels around a ready scorer (``scorer.rewards`` -> (n, K) in ``aspects`` order),
    with the agreement diagnostics of the module docstring on ``pairs`` (the train pairs)."""
    t0 = time.time()
    pairs = pairs.reset_index(drop=True)
    models = ProxyModels(list(aspects), {}, scorer, {"seed": seed, "backend": scorer.backend,
                                                     "n_pairs": int(len(pairs))})
    if len(pairs):
        gaps = models.gaps(pairs)
        dlen = None if lengths_fn is None else lengths_fn(pairs)
        models.metrics = agreement_metrics(gaps, pairs, aspects, scorer.backend, dlen)
    models.info["seconds"] = round(time.time() - t0, 3)
    logger.info("score-only rewards (%s) for %d aspects checked on %d pairs in %.1fs",
                scorer.backend, len(aspects), len(pairs), time.time() - t0)
    return models


def char_dlen(pairs: pd.DataFrame) -> np.ndarray:
    """len(chosen) - len(rejected) in characters (a score-only backend has no tokenizer of
    its own that the pair table's lengths would be in)."""
    if "len_chosen" in pairs.columns:
        return (pairs["len_chosen"].to_numpy(np.float64)
                - pairs["len_rejected"].to_numpy(np.float64))
    return (pairs["chosen"].str.len().to_numpy(np.float64)
            - pairs["rejected"].str.len().to_numpy(np.float64))


def unified_scorer(inner, mapped: bool, pairs: pd.DataFrame):
    """The margin baseline's scorer over ``inner`` (which scores [aspects..., (unified)])."""
    if mapped:
        return inner
    table, _, _ = unique_texts(pairs.reset_index(drop=True))
    if not len(table):
        raise StageError("the margin baseline's unified reward needs train pairs; none.")
    return StandardisedMean.fit(inner, table["input"].tolist(), table["response"].tolist())
