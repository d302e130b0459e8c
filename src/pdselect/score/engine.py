"""Scoring at scale: sharded resumable scoring (local or Ray) and streamed PD; the threshold
selection without a global sort is in select/threshold.py. See docs/BENCHMARKS.md for numbers.
Paths may be fsspec URIs (score/storage.py); the Ray engine needs local or shared POSIX paths.

    summary = score_stage(pairs_path, model_dir, aspects, cfg, out_dir)   # pipeline entry
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import storage
from .sharded import (GapsFn, PD_DIR, ShardPlan, gaps_frame, pd_pass, plan_shards,
                      read_scores, score_shard, score_sharded)

__all__ = ["score_stage", "score_sharded", "pd_pass", "read_scores",
           "plan_shards", "score_shard", "gaps_frame",
           "ShardPlan", "GapsFn"]


def _local_fn(models) -> GapsFn:
    if isinstance(models, (str, Path)):
        raise TypeError("internal: resolve a model folder with a factory first")
    return models.gaps if hasattr(models, "gaps") else models


def score_stage(pairs_path: str | Path, models, aspects: Sequence[str], cfg,
                out_dir: str | Path, margin_models=None, split: str | None = "train",
                concurrency: int | None = None, progress: bool = False, weights=None) -> dict:
    """Sharded score stage: pass 1 (gaps, local or Ray per ``cfg.score.engine``), pass 2 (q, PD).

    ``models``: the proxy stage's model folder (loaded in each worker), a ``ProxyModels``, or a
    ``gaps_fn(pairs_df) -> (n, K)``; the Ray engine needs the folder or a picklable zero-arg
    factory returning a gaps_fn. ``margin_models`` likewise for the unified model (optional).
    Writes ``out_dir/scores/part-*`` (gaps), ``out_dir/pd/part-*`` (the score table, same
    columns as ``score.score_table``) and ``out_dir/q.json``; re-running resumes.
    ``weights``: per-aspect PD weights (``score.pd_weights``); None = equal.
    """
    from .ray_engine import ProxyGapsFactory

    s = cfg.score

    def factory(m):
        if m is None:
            return None
        if isinstance(m, (str, Path)):
            return ProxyGapsFactory(m, cfg.proxy)
        return m

    if s.engine == "ray":
        from .ray_engine import score_sharded_ray

        run = score_sharded_ray(pairs_path, factory(models), aspects, out_dir, s.shard_size,
                                actors=concurrency or s.ray_actors, address=s.ray_address,
                                split=split,
                                margin_factory=factory(margin_models),
                                cpus_per_actor=s.ray_cpus_per_actor,
                                gpus_per_actor=s.ray_gpus_per_actor,
                                batch_size=s.ray_batch_size, progress=progress)
    else:
        fn = factory(models)() if isinstance(models, (str, Path)) else _local_fn(models)
        mfn = None
        if margin_models is not None:
            mfn = (factory(margin_models)() if isinstance(margin_models, (str, Path))
                   else _local_fn(margin_models))
        run = score_sharded(pairs_path, fn, aspects, out_dir, s.shard_size, split=split,
                            margin_fn=mfn, progress=progress)
    q = pd_pass(out_dir, aspects, s.gamma, weights)
    pd_sum, n = 0.0, 0
    for p in storage.glob(storage.resolve(out_dir) / PD_DIR, "part-*.parquet"):
        col = storage.read_table(p, columns=["pd"]).column("pd").to_numpy()
        pd_sum, n = pd_sum + float(np.sum(col)), n + len(col)
    summary = {"n_scored": n, "q": q, "pd_mean": pd_sum / n if n else float("nan"),
               "engine": s.engine, "shard_size": s.shard_size, **run}
    storage.write_json(storage.resolve(out_dir) / "meta.json", summary)
    return summary
