"""score.engine=ray with 1 vs 2 actors vs the local engine, real MiniLM scorer, one run.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/ray_actors.py \
        --n-pairs 240 --shard-size 60 --batch-size 30 --out /tmp/ray_actors.json

Pairs from ``pdselect.data.synthetic``; a proxy model folder with K = 4 random linear heads
on MiniLM (features both) is saved once and loaded by the production factory
(``ProxyGapsFactory``) in every actor, as ``pdselect run score.engine=ray`` does. Each mode
scores the same pairs with a COLD embedding cache of its own (pass 1 only: the gap parts):
``local`` (this process, one torch thread), ``ray-1`` and ``ray-2`` (fixed pools of 1 and 2
actors, 1 CPU and 1 torch thread each, on a local Ray started once with 2 CPUs; Ray start-up is
timed separately). Gap tables are checked equal across modes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def save_models(folder: Path, cache_dir: str) -> None:
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.reward.base import ProxyModels
    from pdselect.reward.frozen import FrozenScorer, make_store
    from pdselect.reward.heads import BTHeads

    store = make_store(ProxyConfig(cache_dir=cache_dir, features="both"))
    heads = BTHeads(len(ASPECTS), 2 * store.dim, "linear")
    with torch.no_grad():
        heads.w.copy_(torch.randn(len(ASPECTS), 2 * store.dim,
                                  generator=torch.Generator().manual_seed(0)))
    ProxyModels(ASPECTS, {}, FrozenScorer(store, heads.eval(), 1, "both")).save(folder)


def gaps_table(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "scores").sort_values("pair_id", ignore_index=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-pairs", type=int, default=240)
    ap.add_argument("--shard-size", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=30)
    ap.add_argument("--modes", nargs="+", default=["local", "ray-1", "ray-2"])
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    import ray
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.score.engine import score_sharded
    from pdselect.data.synthetic import generate_pairs
    from pdselect.score.ray_engine import ProxyGapsFactory, score_sharded_ray

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    generate_pairs(a.n_pairs, root / "pairs", shard_size=10**7, seed=3)
    pd.read_parquet(root / "pairs").iloc[: a.n_pairs].to_parquet(root / "pairs.parquet")
    save_models(root / "model", str(root / "cache-setup"))
    load = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t
    rows = []
    for mode in a.modes:
        cfg = ProxyConfig(cache_dir=str(root / f"cache-{mode}"), features="both")
        factory = ProxyGapsFactory(root / "model", cfg)
        out = root / f"out-{mode}"
        t = time.perf_counter()
        if mode == "local":
            s = score_sharded(root / "pairs.parquet", factory(), ASPECTS, out, a.shard_size,
                              split=None)
        else:
            s = score_sharded_ray(root / "pairs.parquet", factory, ASPECTS, out, a.shard_size,
                                  actors=int(mode.split("-")[1]), split=None,
                                  batch_size=a.batch_size)
        dt = time.perf_counter() - t
        rows.append({"mode": mode, "seconds": dt, "pairs_per_s": a.n_pairs / dt,
                     "shards": s["n_shards"]})
        print(f"{mode}: {dt:.1f}s, {a.n_pairs / dt:.2f} pairs/s", flush=True)
    load.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    ray.shutdown()
    ref = gaps_table(root / f"out-{a.modes[0]}")
    diff = {m: float(np.abs(gaps_table(root / f"out-{m}")[[f"gap__{x}" for x in ASPECTS]]
                            .to_numpy() - ref[[f"gap__{x}" for x in ASPECTS]].to_numpy()).max())
            for m in a.modes[1:]}
    base = {r["mode"]: r["seconds"] for r in rows}
    print(f"ray start-up (not in the rows): {ray_start:.1f}s")
    print(f"load before / after: {load[0]}\n                     {load[1]}")
    print("| mode | seconds | pairs/s | vs local |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['seconds']:.1f} | {r['pairs_per_s']:.2f} | "
              f"{base.get('local', r['seconds']) / r['seconds']:.2f}x |")
    if "ray-1" in base and "ray-2" in base:
        print(f"ray-2 / ray-1 speed-up: {base['ray-1'] / base['ray-2']:.2f}x")
    print(f"max |gap - gap_{a.modes[0]}|: {diff}")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "load": load, "ray_start_s":
                                           ray_start, "rows": rows, "max_abs_diff": diff},
                                          indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
