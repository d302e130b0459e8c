"""Proxy reward models r_k, one per aspect (METHOD.md 3.1-3.2), and the unified model of the
RAF-like margin baseline.

    models = train_proxy_models(train_pairs, aspects, cfg.proxy, seed=0, out_dir=run / "proxy")
    delta = models.gaps(all_pairs)              # (N, K) r_k(x, y_w) - r_k(x, y_l), rho dropped
    models = load_proxy_models(run / "proxy", cfg.proxy)

Backends (``cfg.backend``): ``frozen_encoder`` (cached sentence embeddings + BT heads, CPU) and
``multihead`` (one fine-tuned backbone, a head per aspect + the unified head: multihead.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import MIN_PAIRS_PER_ASPECT, ProxyModels, train_models
from .loading import load_proxy_models

UNIFIED = "unified"


def make_backend(cfg, out_dir: Path | None = None):
    if cfg.backend == "frozen_encoder":
        from .frozen import FrozenBackend
        return FrozenBackend(cfg)
    if cfg.backend == "multihead":
        from .multihead import MultiheadBackend
        return MultiheadBackend(cfg, out_dir)
    raise ValueError(f"proxy.backend must be frozen_encoder or multihead, got {cfg.backend!r}")


def train_proxy_models(train_pairs: pd.DataFrame, aspects: list[str], cfg, seed: int,
                       out_dir: Path | None = None, progress: bool = False,
                       min_pairs: int = MIN_PAIRS_PER_ASPECT,
                       diagnostics: bool = True) -> ProxyModels:
    """One length-debiased proxy reward model per aspect, trained on D_k (pairs labelled k).

    Raises StageError when an aspect has fewer than ``min_pairs`` pairs. Saves to ``out_dir``
    when given (``load_proxy_models`` reads it back). With ``cfg.cross_fit >= 2`` the models are
    cross-fitted by input (reward/crossfit.py): ``gaps`` of a training pair is out of fold.
    """
    if int(getattr(cfg, "cross_fit", 0) or 0) >= 2:
        from .crossfit import train_cross_fitted
        models = train_cross_fitted(train_pairs, list(aspects), cfg, seed, make_backend,
                                    int(cfg.cross_fit), out_dir, progress, min_pairs,
                                    diagnostics)
    else:
        models = train_models(train_pairs, list(aspects), cfg, seed, make_backend(cfg, out_dir),
                              progress, min_pairs, diagnostics)
    if out_dir is not None:
        models.save(Path(out_dir))
    return models


def train_unified_model(train_pairs: pd.DataFrame, cfg, seed: int,
                        out_dir: Path | None = None, progress: bool = False,
                        diagnostics: bool = True) -> ProxyModels:
    """One head named "unified" on ALL pairs, aspect labels ignored (RAF-like margin baseline).
    Same protocol as an aspect model: length term, resampling, validation by input."""
    pairs = train_pairs.assign(aspect=UNIFIED)
    return train_proxy_models(pairs, [UNIFIED], cfg, seed, out_dir, progress,
                              diagnostics=diagnostics)


__all__ = ["ProxyModels", "load_proxy_models", "train_proxy_models", "train_unified_model",
           "UNIFIED"]
