"""Cross-fitted proxy models: every pair is scored by models that never saw its input.

The inputs are split into ``F`` folds by a seeded hash of ``input_id`` (so a fold does not
depend on row order, and an input never seen in training still has a fold). For each fold f the
K aspect models are trained on the pairs of the OTHER folds; a pair of fold f is scored by
fold f's models only. Then

- no pair's own label reaches its PD, even with models that share data across aspects
  (``proxy.multitask``): the pair is not in the training data of the models that score it;
- the unified model of the margin baseline is out-of-sample too (trained on all aspects, it
  otherwise scores the very pairs it was fitted on);
- the out-of-fold accuracy of aspect k over ALL of D_k is a held-out accuracy with F times
  the validation pairs of a single split, reported with a 95% Wilson interval.

    models = train_cross_fitted(pairs, aspects, cfg, seed, make_backend, n_folds=5)
    delta = models.gaps(pairs)          # out of fold for pairs of the training inputs
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..run.artifacts import write_json
from ..errors import StageError
from .base import META_FILE, ProxyModels, train_models, unique_texts
from .diagnostics import label_agreement

logger = logging.getLogger(__name__)


def fold_of(input_ids, n_folds: int, seed: int) -> np.ndarray:
    """Fold of every input id: sha256(seed, id) mod F (stable across runs and row orders)."""
    out = np.empty(len(input_ids), dtype=np.int64)
    memo: dict = {}
    for i, x in enumerate(input_ids):
        f = memo.get(x)
        if f is None:
            h = hashlib.sha256(f"{int(seed)}\x00{x}".encode("utf-8", "surrogatepass")).digest()
            f = memo[x] = int.from_bytes(h[:8], "little") % int(n_folds)
        out[i] = f
    return out


class CrossFitModels(ProxyModels):
    """F fold models behind the ProxyModels interface; ``gaps`` routes pairs by input fold."""

    def __init__(self, aspects: list[str], metrics: dict, folds: list[ProxyModels], seed: int,
                 info: dict | None = None):
        self.aspects, self.metrics, self.folds = list(aspects), metrics, folds
        self.seed, self.info = int(seed), dict(info or {})
        self.scorer = folds[0].scorer

    @property
    def n_folds(self) -> int:
        return len(self.folds)

    def rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        raise StageError("cross-fitted proxy models score PAIRS (each by the models of its "
                         "input's fold); call gaps(pairs).")

    def gaps(self, pairs: pd.DataFrame, progress: bool = False) -> np.ndarray:
        pairs = pairs.reset_index(drop=True)
        out = np.zeros((len(pairs), len(self.aspects)))
        fold = fold_of(pairs["input_id"].to_numpy(), self.n_folds, self.seed)
        for f, models in enumerate(self.folds):
            rows = np.flatnonzero(fold == f)
            if len(rows):
                out[rows] = models.gaps(pairs.iloc[rows], progress)
        return out

    def save(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        for f, m in enumerate(self.folds):
            m.save(out_dir / f"fold-{f}")
        write_json(out_dir / META_FILE, {"aspects": self.aspects, "backend": self.backend,
                                         "cross_fit": self.n_folds, "seed": self.seed,
                                         "metrics": self.metrics, "info": self.info})


def train_cross_fitted(pairs: pd.DataFrame, aspects: list[str], cfg, seed: int, make_backend,
                       n_folds: int, out_dir: Path | None = None, progress: bool = False,
                       min_pairs: int = 8, diagnostics: bool = True) -> CrossFitModels:
    """Train F fold models (module docstring); metrics are out-of-fold over all of D_k."""
    if n_folds < 2:
        raise ValueError(f"cross-fitting needs >= 2 folds, got {n_folds}")
    pairs = pairs.reset_index(drop=True)
    fold = fold_of(pairs["input_id"].to_numpy(), n_folds, seed)
    present = np.unique(fold)
    if len(present) < n_folds:
        raise StageError(f"proxy.cross_fit={n_folds}: only {len(present)} folds hold inputs "
                         f"({pairs['input_id'].nunique()} inputs). Fix: use fewer folds.")
    folds = []
    for f in range(n_folds):
        backend = make_backend(cfg, None if out_dir is None else Path(out_dir) / f"fold-{f}")
        folds.append(train_models(pairs[fold != f], list(aspects), cfg, seed, backend,
                                  progress, min_pairs, diagnostics=False))
    models = CrossFitModels(list(aspects), {}, folds, seed,
                            {"n_folds": n_folds, "n_pairs": int(len(pairs)),
                             "backend": folds[0].backend})
    if diagnostics:
        models.metrics = out_of_fold_metrics(models, pairs, aspects, backend.n_tokens, cfg)
    return models


def out_of_fold_metrics(models: CrossFitModels, pairs: pd.DataFrame, aspects: list[str],
                        n_tokens, cfg) -> dict[str, dict]:
    """Per aspect: out-of-fold accuracy on D_k (reward gap > 0, rho dropped) with its 95%
    Wilson interval, and the correlation of the out-of-fold reward with response length."""
    gaps = models.gaps(pairs)
    table, cw, cl = unique_texts(pairs)
    lens = n_tokens(table["response"].tolist()).astype(np.float64)
    # length correlation over the pairs of D_k: the gap vs the token length difference
    out = label_agreement(gaps, pairs, aspects, lens[cw] - lens[cl])
    for m in out.values():
        m.update({"n_train": int(round(m["n_pairs"] * (models.n_folds - 1) / models.n_folds)),
                  "val_split": f"out of fold ({models.n_folds} folds by input)",
                  "rho": cfg.rho, "tau": cfg.tau, "p_r": cfg.p_r, "backend": models.backend})
    return out
