"""The proxy stage of a score-only reward source (proxy.backend = scores | reward_model): build
the source's aspect models and the margin baseline's unified model, save both. The sources are
reward/scores.py and reward/reward_model.py; what they share is reward/fixed.py. This module
sits above all three, so none of them imports another's dispatch (no import circle).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

SCORE_ONLY = ("scores", "reward_model")


def build_score_only(train: pd.DataFrame, aspects: list[str], cfg, seed: int, out_dir: Path,
                     data_path: str, rated_path: Path | None, margin: bool) -> dict:
    """The proxy stage of a score-only backend: its models saved to ``out_dir/aspects`` (and
    ``out_dir/unified`` when the margin baseline is on); returns the stage's metrics."""
    if cfg.backend == "scores":
        from .scores import scores_models

        models, unified = scores_models(train, aspects, cfg, seed, data_path, rated_path, margin)
    elif cfg.backend == "reward_model":
        from .reward_model import reward_model_models

        models, unified = reward_model_models(train, aspects, cfg, seed, margin)
    else:
        raise ValueError(f"not a score-only backend: {cfg.backend!r}")
    models.save(Path(out_dir) / "aspects")
    metrics = {"aspects": models.metrics}
    if unified is not None:
        unified.save(Path(out_dir) / "unified")
        metrics["unified"] = unified.metrics
    return metrics
