"""Scoring throughput: pdselect's scorer vs the naive K-reward-model baseline, same backbone.

    OMP_NUM_THREADS=1 .venv/bin/python bench/score_throughput.py --n-pairs 2000 --naive-pairs 300

Both use the frozen all-MiniLM-L6-v2 encoder (mean pooled, L2-normalised; proxy.features=both,
i.e. joint "input [SEP] response" + response-only embeddings) and K = 4 linear heads with fixed
random weights (throughput does not depend on trained weights), batch size 64, one torch
thread, torch.inference_mode.

(a) pdselect: ``score_sharded`` + ``pd_pass`` with ``ProxyModels.gaps``: each unique (input,
    response) text encoded once (content-hash cache), all K heads in one matmul, batches
    bucketed by length. Measured cold (empty cache) and warm (cache filled by the cold run).
(b) naive: for each aspect k, encode chosen and rejected of every pair (joint + response) and
    apply head k: 2 sides x 2 feature kinds x K encoder passes per pair, no cache. It reuses
    pdselect's length-bucketed ``Encoder.encode_ids``, so the baseline is not handicapped by
    padding: the gap is the algorithmic one (dedup + shared encoder pass).

Every measurement runs in its own child process; peak RSS is that child's ru_maxrss. The
encoder load is excluded from the timing in both. Pairs come from pdselect.data.synthetic
(UltraFeedback shape: 4 responses / 6 pairs per input). The two gap tables are compared on the
naive subset as a correctness check.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def _models(cache_dir: str):
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.reward.base import ProxyModels
    from pdselect.reward.frozen import FrozenScorer, make_store
    from pdselect.reward.heads import BTHeads

    cfg = ProxyConfig(cache_dir=cache_dir, features="both")
    store = make_store(cfg)
    dim = 2 * store.dim
    heads = BTHeads(len(ASPECTS), dim, "linear")
    with torch.no_grad():
        heads.w.copy_(torch.randn(len(ASPECTS), dim, generator=torch.Generator().manual_seed(0)))
    store.encoder.encode_ids(store.framer.response_ids(["warm up"]))  # load outside the timing
    return ProxyModels(ASPECTS, {}, FrozenScorer(store, heads.eval(), 1, "both")), store, heads


def child_pdselect(pairs_dir: str, n: int, cache_dir: str, out: str) -> dict:
    from pdselect.score.engine import pd_pass, score_sharded

    models, store, _ = _models(cache_dir)
    src = Path(out) / "pairs.parquet"
    pd.read_parquet(pairs_dir).iloc[:n].to_parquet(src)
    t = time.perf_counter()
    score_sharded(src, models.gaps, ASPECTS, Path(out) / "run", shard_size=max(n, 1))
    pd_pass(Path(out) / "run", ASPECTS, 0.9)
    dt = time.perf_counter() - t
    g = pd.read_parquet(Path(out) / "run" / "scores")
    np.save(Path(out) / "gaps.npy", g[[f"gap__{a}" for a in ASPECTS]].to_numpy())
    return {"seconds": dt, "texts_encoded": store.encoder.n_encoded - 1}


def naive_gaps(store, heads, pairs: pd.DataFrame) -> np.ndarray:
    """The naive baseline: K separate reward models, each encoding every pair's two texts
    itself (no cache, no sharing across aspects). Also used by bench/encoder_floor.py."""
    import torch

    enc, fr = store.encoder, store.framer
    gaps = np.zeros((len(pairs), len(ASPECTS)))
    for k in range(len(ASPECTS)):          # one "reward model" per aspect
        r = {}
        for side in ("chosen", "rejected"):
            ids_j = fr.joint_ids(pairs["input"].tolist(), pairs[side].tolist())
            ids_r = fr.response_ids(pairs[side].tolist())
            X = np.hstack([enc.encode_ids(ids_j), enc.encode_ids(ids_r)])
            with torch.inference_mode():
                r[side] = (torch.as_tensor(X) @ heads.w[k]).numpy()
        gaps[:, k] = r["chosen"] - r["rejected"]
    return gaps


def child_naive(pairs_dir: str, n: int, cache_dir: str, out: str) -> dict:
    _, store, heads = _models(cache_dir)
    pairs = pd.read_parquet(pairs_dir).iloc[:n]
    t = time.perf_counter()
    gaps = naive_gaps(store, heads, pairs)
    dt = time.perf_counter() - t
    np.save(Path(out) / "gaps.npy", gaps)
    return {"seconds": dt, "texts_encoded": store.encoder.n_encoded - 1}


def run_child(mode: str, pairs_dir: str, n: int, cache_dir: str) -> dict:
    out = tempfile.mkdtemp(prefix=f"bench-{mode}-")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--child", mode, "--pairs", pairs_dir, "--n-pairs", str(n),
           "--cache-dir", cache_dir, "--child-out", out]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"child {mode} failed:\n{res.stderr[-3000:]}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r.update(mode=mode, n_pairs=n, out=out, pairs_per_s=n / r["seconds"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-pairs", type=int, default=2000)
    ap.add_argument("--naive-pairs", type=int, default=300)
    ap.add_argument("--pairs", default="")
    ap.add_argument("--cache-dir", default="")
    ap.add_argument("--child", default="")
    ap.add_argument("--child-out", default="")
    a = ap.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(1)
        fn = {"pdselect": child_pdselect, "naive": child_naive}[a.child]
        r = fn(a.pairs, a.n_pairs, a.cache_dir, a.child_out)
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r))
        return
    pairs = a.pairs or tempfile.mkdtemp(prefix="bench-pairs-")
    if not a.pairs:
        from pdselect.data.synthetic import generate_pairs
        generate_pairs(max(a.n_pairs, a.naive_pairs), pairs, shard_size=10**7, seed=1)
    cache = a.cache_dir or tempfile.mkdtemp(prefix="bench-cache-")
    rows = [run_child("pdselect", pairs, a.n_pairs, cache),        # cold: empty cache
            run_child("pdselect", pairs, a.n_pairs, cache),        # warm: cache filled
            run_child("naive", pairs, a.naive_pairs, cache)]
    rows[0]["mode"], rows[1]["mode"] = "pdselect (cold cache)", "pdselect (warm cache)"
    ga = np.load(Path(rows[0]["out"]) / "gaps.npy")[: a.naive_pairs]
    gb = np.load(Path(rows[2]["out"]) / "gaps.npy")
    print(f"{'mode':24s} {'pairs':>7s} {'seconds':>8s} {'pairs/s':>8s} {'texts enc':>9s} "
          f"{'peak RSS MB':>11s}")
    for r in rows:
        print(f"{r['mode']:24s} {r['n_pairs']:7d} {r['seconds']:8.1f} {r['pairs_per_s']:8.1f} "
              f"{r['texts_encoded']:9d} {r['peak_rss_mb']:11.0f}")
    print(f"speed-up pdselect(cold)/naive: {rows[0]['pairs_per_s'] / rows[2]['pairs_per_s']:.1f}x;"
          f" warm/naive: {rows[1]['pairs_per_s'] / rows[2]['pairs_per_s']:.0f}x")
    print(f"max |gap_pdselect - gap_naive| on the {a.naive_pairs} shared pairs: "
          f"{np.abs(ga - gb).max():.2e}")


if __name__ == "__main__":
    main()
