"""``score.engine=ray``: pass 1 of :mod:`pdselect.score.sharded` as one Ray Data pipeline.

    read_datasource(ShardSource)          the pending shards' rows, tagged (shard, row, n)
      .map_batches(ShardScorer,           callable class: models loaded once per actor
                   compute=ActorPoolStrategy(size=score.ray_actors),
                   num_gpus=score.ray_gpus_per_actor, num_cpus=score.ray_cpus_per_actor,
                   batch_size=score.ray_batch_size)
      .write_parquet(<out>/scores/_ray, partition_cols=["__shard"])
    commit: a staged shard whose n rows are all there -> <out>/scores/part-<s>.parquet

Resume uses the local engine's manifest (``_plan.json`` + one ``part-<s>.parquet`` per finished
shard, renamed into place): a killed run, local or Ray, resumes on either engine without
redoing a finished shard. Shards are fixed ROW RANGES of the input, which
``ray.data.read_parquet`` cannot address (it exposes no row positions), so the read is a small
:class:`ray.data.Datasource` giving one read task per pending shard (only the row groups of
its range, through pyarrow). Ray's parquet writer is not atomic, so its files are staged: a
shard is committed only when its staged rows are exactly rows 0..n-1 of it (``__row``/``__n``
travel with every row), and an incomplete staging folder (a run killed mid-shard) is deleted
and redone. Staged shards that are complete are committed at the start of the next run too.

    from pdselect.score.ray_engine import score_sharded_ray
    score_sharded_ray("pairs.parquet", ProxyGapsFactory(model_dir, cfg.proxy), aspects, out,
                      shard_size=100_000, actors=4, gpus_per_actor=1, address="auto")

On a real cluster every path (pairs, model folder, output) must be visible to every node
(shared filesystem); each worker needs pdselect and its dependencies (README, Scale).
Object-store URIs are refused (:func:`posix_path`): the staged files are committed by rename,
which object stores do not have, and the read tasks run in other processes; the local engine
takes them (score/storage.py writes each part in one put). The scorer is passed as a picklable
zero-argument FACTORY built inside each actor, because models with open file handles, caches
and torch modules should not be pickled.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..run.artifacts import atomic_path
from ..errors import StageError
from . import storage
from .sharded import (GAPS_DIR, SCORER_COLUMNS, GapsFn, ShardPlan, gaps_frame, part_name,
                      pending_shards, prepare, read_rows, score_shard)

log = logging.getLogger(__name__)
GapsFactory = Callable[[], GapsFn]
STAGING = "_ray"                        # <out>/scores/_ray/__shard=<s>/*.parquet
META = ["__shard", "__row", "__n"]      # travel with every row from the read to the commit


class ProxyGapsFactory:
    """Picklable factory: loads ``ProxyModels`` from the proxy stage folder in the actor. An
    actor Ray gave GPUs to encodes on ``cuda`` when ``proxy.device`` is ``cpu``."""

    def __init__(self, model_dir: str | Path, proxy_cfg):
        self.model_dir, self.proxy_cfg = str(model_dir), proxy_cfg

    def __call__(self) -> GapsFn:
        from ..reward import load_proxy_models

        cfg = self.proxy_cfg
        if str(cfg.device) == "cpu" and _actor_gpus():
            cfg = replace(cfg, device="cuda")
        return load_proxy_models(Path(self.model_dir), cfg).gaps


def _actor_gpus() -> list:
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # pragma: no cover - outside a Ray worker
        return []


# ----------------------------------------------------------------------------- read
def read_shard(plan: ShardPlan, index: int, columns: Sequence[str], split: str | None,
               batch_rows: int) -> Iterator[pa.Table]:
    """The rows of shard ``index`` (of ``split``), tagged with __shard / __row / __n, in tables
    of at most ``batch_rows`` rows. A shard with no row of the split yields nothing."""
    start, stop = plan.bounds(index)
    cols = list(dict.fromkeys(list(columns) + (["split"] if split else [])))
    df = read_rows(plan, start, stop, cols)
    if split:
        df = df[df["split"] == split].drop(columns="split").reset_index(drop=True)
    n = len(df)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = (table.append_column("__shard", pa.array(np.full(n, index, np.int64)))
             .append_column("__row", pa.array(np.arange(n, dtype=np.int64)))
             .append_column("__n", pa.array(np.full(n, n, np.int64))))
    for lo in range(0, n, max(1, int(batch_rows))):
        yield table.slice(lo, batch_rows)


def shard_source(plan: ShardPlan, shards: Sequence[int], columns: Sequence[str],
                 split: str | None, batch_rows: int):
    """A ``ray.data.Datasource`` with one read task per shard in ``shards``."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ShardSource(Datasource):
        def estimate_inmemory_data_size(self) -> int:
            return int(sum(plan.bytes_per_file) * len(shards) / max(plan.n_shards, 1))

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            per = self.estimate_inmemory_data_size() // max(len(shards), 1)
            return [ReadTask(lambda s=s: read_shard(plan, s, columns, split, batch_rows),
                             BlockMetadata(num_rows=None, size_bytes=int(per),
                                           input_files=None, exec_stats=None),
                             per_task_row_limit=per_task_row_limit)
                    for s in shards]

    return ShardSource()


# ----------------------------------------------------------------------------- score
class ShardScorer:
    """Ray Data callable class: a batch of tagged pair rows -> their gap rows (tags kept)."""

    def __init__(self, factory: GapsFactory, aspects: Sequence[str],
                 margin_factory: GapsFactory | None = None, threads: int = 1):
        try:
            import torch

            torch.set_num_threads(max(1, int(threads)))  # the actor's CPUs, no oversubscription
        except ImportError:  # pragma: no cover - fake scorers in tests need no torch
            pass
        self.gaps_fn = factory()
        self.margin_fn = margin_factory() if margin_factory is not None else None
        self.aspects = list(aspects)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch.drop(columns=META).reset_index(drop=True)
        out = gaps_frame(rows, self.gaps_fn, self.aspects, self.margin_fn)
        for c in META:
            out[c] = batch[c].to_numpy()
        return out


# ----------------------------------------------------------------------------- commit
def staging_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / GAPS_DIR / STAGING


def commit_staged(out_dir: str | Path) -> tuple[dict[int, int], list[int]]:
    """Move every COMPLETE staged shard to its part file; delete incomplete ones.

    Returns ({shard: rows committed}, [incomplete shards removed])."""
    done, broken = {}, []
    root = staging_dir(out_dir)
    if not root.exists():
        return done, broken
    for d in sorted(root.glob("__shard=*")):
        index = int(d.name.split("=", 1)[1])
        table = _read_staged(d)
        part = Path(out_dir) / GAPS_DIR / part_name(index)
        if table is not None and not part.exists():
            df = table.to_pandas().sort_values("__row", kind="stable", ignore_index=True)
            with atomic_path(part) as tmp:
                pq.write_table(pa.Table.from_pandas(df.drop(columns=["__row", "__n"]),
                                                    preserve_index=False), tmp)
            done[index] = len(df)
        elif table is None:
            broken.append(index)
        shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return done, broken


def _read_staged(folder: Path) -> pa.Table | None:
    """The staged rows of one shard if they are exactly rows 0..n-1 of it, else None."""
    try:
        tables = [pq.read_table(f) for f in sorted(folder.glob("*.parquet"))]
    except (OSError, pa.ArrowException):  # a file truncated by a kill: not complete
        return None
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="default")
    rows = np.sort(table.column("__row").to_numpy())
    n = table.column("__n").to_numpy()
    if len(rows) == 0 or (n != n[0]).any() or len(rows) != n[0] or \
            not np.array_equal(rows, np.arange(n[0])):
        return None
    return table


# ----------------------------------------------------------------------------- driver
def init_ray(address: str = "", num_cpus: int | None = None) -> None:
    """Connect to ``address`` (a cluster), or start a local Ray; no-op if already connected.
    A job's runtime_env (``ray job submit --runtime-env-json``) reaches every worker."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False)


def check_resources(actors: int, cpus_per_actor: float, gpus_per_actor: float,
                    nodes: list[dict] | None = None) -> None:
    """Stop before any work when the actor pool cannot be placed: Ray would otherwise wait
    forever for resources ("may hang forever"). ``nodes``: the alive nodes' resources
    (default: ``ray.nodes()`` after init); an actor needs its CPUs and GPUs on ONE node."""
    if nodes is None:
        import ray

        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
    total = {k: sum(float(n.get(k, 0)) for n in nodes) for k in ("CPU", "GPU")}
    per_node = {k: max([float(n.get(k, 0)) for n in nodes] or [0.0]) for k in ("CPU", "GPU")}
    fix = ("Fix: lower score.ray_actors / score.ray_{k}_per_actor, set "
           "score.ray_gpus_per_actor=0 to encode on CPUs, or connect score.ray_address to a "
           "cluster that has them (on an autoscaling cluster, start those nodes first).")
    for k, per_actor in (("GPU", gpus_per_actor), ("CPU", cpus_per_actor)):
        if per_actor <= 0:
            continue
        need = actors * per_actor
        if per_actor > per_node[k] or need > total[k] + 1e-9:
            raise StageError(
                f"score.engine=ray asks for {actors} actors x {per_actor:g} {k}s = {need:g} "
                f"{k}s, but the Ray cluster has {total[k]:g} {k}s ({per_node[k]:g} on its "
                f"largest node); Ray would wait for them forever. " + fix.format(k=k.lower()))


def posix_path(path: str | Path) -> Path:
    """``path`` as a local Path (plain paths, ``file://``), or a StageError for object stores."""
    where = storage.resolve(path)
    if isinstance(where, Path):
        return where
    raise StageError(f"{where}: the Ray engine needs a local or shared POSIX path, not an "
                     "object store: Ray's parquet writer stages files that are committed by "
                     "rename (not atomic, or absent, on object stores), and its workers read "
                     "in other processes. Fix: set score.engine=local for object-store URIs "
                     "(each part is then written in one put), or mount the bucket on every "
                     "node (s3fs-fuse, gcsfuse, NFS) and give the mount path.")


def score_sharded_ray(pairs_path: str | Path, factory: GapsFactory, aspects: Sequence[str],
                      out_dir: str | Path, shard_size: int = 100_000, actors: int = 2,
                      address: str = "", columns: Sequence[str] = SCORER_COLUMNS,
                      split: str | None = "train",
                      margin_factory: GapsFactory | None = None,
                      cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0,
                      batch_size: int = 4096, progress: bool = False,
                      concurrency: int | None = None) -> dict:
    """Pass 1 on Ray. Same output and summary as :func:`sharded.score_sharded`.

    ``actors``: size of the fixed actor pool (each loads the models once); ``gpus_per_actor``
    (fractions share a GPU), ``cpus_per_actor`` (also the actor's torch threads) and
    ``batch_size`` (rows per ``map_batches`` call) map to ``score.ray_*``. ``concurrency`` is
    the old name of ``actors``."""
    if concurrency is not None:
        actors = concurrency
    pairs_path, out_dir = posix_path(pairs_path), posix_path(out_dir)
    init_ray(address)
    plan = prepare(pairs_path, aspects, out_dir, shard_size)
    resumed_staged, _ = commit_staged(out_dir)   # complete shards staged by a killed run
    todo = pending_shards(plan, out_dir)
    n = 0
    if todo:
        pool = max(1, min(int(actors), len(todo)))
        check_resources(pool, cpus_per_actor, gpus_per_actor)
        _run_pipeline(plan, todo, out_dir, factory, aspects, columns, split, margin_factory,
                      pool, cpus_per_actor, gpus_per_actor, batch_size, progress)
        n = _commit_run(plan, out_dir, columns, split, margin_factory)
        log.info("ray: %d shards scored (%d rows) by %d actors", len(todo), n, pool)
    return {"n_shards": plan.n_shards, "n_shards_scored_now": len(todo),
            "n_shards_resumed": plan.n_shards - len(todo), "n_rows_scored_now": n,
            "n_staged_committed_on_resume": len(resumed_staged),
            "n_input_rows": plan.n_rows, "engine": "ray"}


def _run_pipeline(plan: ShardPlan, todo: Sequence[int], out_dir: Path, factory: GapsFactory,
                  aspects: Sequence[str], columns: Sequence[str], split: str | None,
                  margin_factory: GapsFactory | None, pool: int, cpus_per_actor: float,
                  gpus_per_actor: float, batch_size: int, progress: bool) -> None:
    """Read the pending shards, score them on an actor pool, stage them under ``_ray``."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    ds = ray.data.read_datasource(shard_source(plan, todo, columns, split, batch_size),
                                  num_cpus=0)   # I/O only: never waits for a pool's CPUs
    ds = ds.map_batches(
        ShardScorer, batch_size=int(batch_size), batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
        fn_constructor_kwargs={"factory": factory, "aspects": list(aspects),
                               "margin_factory": margin_factory,
                               "threads": max(1, int(cpus_per_actor))})
    ds.write_parquet(str(staging_dir(out_dir)), partition_cols=["__shard"],
                     ray_remote_args={"num_cpus": 0})


def _commit_run(plan: ShardPlan, out_dir: Path, columns: Sequence[str], split: str | None,
                margin_factory: GapsFactory | None) -> int:
    """Commit the staged shards (refusing incomplete ones), write an empty part for each shard
    with no row of the split; returns the rows committed."""
    done, broken = commit_staged(out_dir)
    if broken:
        raise StageError(f"Ray finished but shards {broken} were staged incomplete in "
                         f"{staging_dir(out_dir)}. Fix: re-run (they are redone).")
    for i in pending_shards(plan, out_dir):   # no row of the split: an empty part
        score_shard(plan, i, _never, out_dir, columns, split,
                    _never if margin_factory is not None else None)
    return sum(done.values())


def _never(df):  # pragma: no cover - only called on rows, and empty shards have none
    raise StageError(f"internal: an empty shard had {len(df)} rows")
