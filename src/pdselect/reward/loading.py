"""Read saved proxy models back: one entry point for every kind a proxy stage writes.

    models = load_proxy_models(run / "proxy" / "aspects", cfg.proxy)

The folder's ``proxy_models.json`` (written last by ``ProxyModels.save``) says what it holds:
cross-fitted folds (``cross_fit``: one sub-folder per fold, each loaded like any folder), or
one scorer of a backend (frozen_encoder heads, a multihead network; its unified
folder may reference the aspects' network). The dispatch lives here,
above the model classes, so base.py never imports the backends or the cross-fitting that
build on it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import StageError
from .base import META_FILE, ProxyModels
from .score_only import SCORE_ONLY


def load_proxy_models(out_dir: str | Path, cfg) -> ProxyModels:
    """The ProxyModels (or CrossFitModels) saved in ``out_dir``, for scoring with ``cfg``."""
    out_dir = Path(out_dir)
    f = out_dir / META_FILE
    if not f.exists():
        raise StageError(f"{f} does not exist: the proxy stage did not finish there. "
                         "Fix: re-run the proxy stage (pdselect run resumes it).")
    meta = json.loads(f.read_text())
    if meta.get("cross_fit"):
        from .crossfit import CrossFitModels

        folds = [load_proxy_models(out_dir / f"fold-{k}", cfg) for k in range(meta["cross_fit"])]
        return CrossFitModels(meta["aspects"], meta["metrics"], folds, meta["seed"],
                              meta.get("info"))
    if meta["backend"] == "frozen_encoder":
        from .frozen import FrozenScorer
        scorer = FrozenScorer.load(out_dir, cfg)
    elif meta["backend"] == "multihead":
        from .multihead import MultiheadScorer
        scorer = MultiheadScorer.load(out_dir, cfg)
    elif meta["backend"] in SCORE_ONLY:
        scorer = _score_only_scorer(out_dir, meta["backend"], cfg)
    elif meta["backend"] == "trl":
        raise StageError(f"{f}: saved by the removed 'trl' backend (one model per aspect). "
                         "Fix: re-run the proxy stage with proxy.backend=multihead.")
    else:
        raise StageError(f"{f}: unknown proxy backend {meta['backend']!r}.")
    return ProxyModels(meta["aspects"], meta["metrics"], scorer, meta.get("info"),
                       shrink=float(getattr(cfg, "uncertainty_shrink", 0.0) or 0.0))


def _score_only_scorer(out_dir: Path, backend: str, cfg):
    """A score-only backend's scorer, wrapped in its saved standardiser when it has one (the
    margin baseline's mean of standardised aspect rewards, reward/fixed.py)."""
    from .fixed import STANDARDISER_FILE, StandardisedMean

    if backend == "scores":
        from .scores import ScoreLookup
        inner = ScoreLookup.load(out_dir, cfg)
    else:
        from .reward_model import RewardModelScorer
        inner = RewardModelScorer.load(out_dir, cfg)
    if (out_dir / STANDARDISER_FILE).exists():
        return StandardisedMean.load(inner, out_dir)
    return inner
