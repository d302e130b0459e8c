"""``score.engine=ray``: pass 1 of :mod:`pdselect.scale.sharded` on a Ray cluster.

The pending shard ids become a Ray Dataset; ``map_batches`` runs :class:`ShardScorer`, a
callable class, so Ray Data keeps an ACTOR POOL (``concurrency`` actors) in which the proxy
models are loaded once per actor, not once per shard. Each call reads its shard's rows straight
from the Parquet input (row groups of that range only), scores them and renames the part into
place: the same files, the same resume rule and the same table as the local engine.

    from pdselect.scale.ray_engine import score_sharded_ray
    score_sharded_ray("pairs.parquet", ProxyGapsFactory(model_dir, cfg.proxy), aspects, out,
                      shard_size=100_000, concurrency=4, address="auto")

Paths must be visible to every node (shared filesystem / mounted bucket) on a real cluster.
The scorer is passed as a picklable zero-argument FACTORY (built inside each actor), because
models with open file handles, caches and torch modules should not be pickled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .sharded import (SCORER_COLUMNS, GapsFn, ShardPlan, pending_shards, prepare,
                      score_shard)

log = logging.getLogger(__name__)
GapsFactory = Callable[[], GapsFn]


class ProxyGapsFactory:
    """Picklable factory: loads ``ProxyModels`` from the proxy stage folder in the actor."""

    def __init__(self, model_dir: str | Path, proxy_cfg):
        self.model_dir, self.proxy_cfg = str(model_dir), proxy_cfg

    def __call__(self) -> GapsFn:
        from ..reward import ProxyModels

        return ProxyModels.load(Path(self.model_dir), self.proxy_cfg).gaps


class ShardScorer:
    """Ray Data callable class: batch of shard ids -> the parts written (ids, rows)."""

    def __init__(self, factory: GapsFactory, plan: ShardPlan, out_dir: str,
                 columns: Sequence[str], split: str | None,
                 margin_factory: GapsFactory | None = None, threads: int = 1):
        try:
            import torch

            torch.set_num_threads(threads)  # one actor per core: no oversubscription
        except ImportError:  # pragma: no cover - fake scorers in tests need no torch
            pass
        self.gaps_fn = factory()
        self.margin_fn = margin_factory() if margin_factory is not None else None
        self.plan, self.out_dir, self.columns, self.split = plan, out_dir, list(columns), split

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [int(i) for i in batch["shard"]]
        rows = [score_shard(self.plan, i, self.gaps_fn, self.out_dir, self.columns, self.split,
                            self.margin_fn) for i in ids]
        return {"shard": np.array(ids, dtype=np.int64), "rows": np.array(rows, dtype=np.int64)}


def init_ray(address: str = "", num_cpus: int | None = None) -> None:
    """Connect to ``address`` (a cluster), or start a local Ray; no-op if already connected."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)


def score_sharded_ray(pairs_path: str | Path, factory: GapsFactory, aspects: Sequence[str],
                      out_dir: str | Path, shard_size: int = 100_000, concurrency: int = 2,
                      address: str = "", columns: Sequence[str] = SCORER_COLUMNS,
                      split: str | None = "train",
                      margin_factory: GapsFactory | None = None,
                      num_cpus_per_actor: float = 1.0) -> dict:
    """Pass 1 on Ray. Same output and summary as :func:`sharded.score_sharded`."""
    import ray

    init_ray(address)
    plan = prepare(pairs_path, aspects, out_dir, shard_size)
    todo = pending_shards(plan, out_dir)
    n = 0
    if todo:
        ds = ray.data.from_items([{"shard": i} for i in todo])
        ds = ds.map_batches(
            ShardScorer, batch_size=1, batch_format="numpy",
            concurrency=max(1, min(int(concurrency), len(todo))),
            num_cpus=num_cpus_per_actor,
            fn_constructor_kwargs={"factory": factory, "plan": plan, "out_dir": str(out_dir),
                                   "columns": list(columns), "split": split,
                                   "margin_factory": margin_factory})
        for row in ds.iter_rows():
            n += int(row["rows"])
            log.info("ray: shard %d scored (%d rows)", int(row["shard"]), int(row["rows"]))
    return {"n_shards": plan.n_shards, "n_shards_scored_now": len(todo),
            "n_shards_resumed": plan.n_shards - len(todo), "n_rows_scored_now": n,
            "n_input_rows": plan.n_rows, "engine": "ray"}
