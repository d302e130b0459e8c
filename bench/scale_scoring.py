"""Scaling of the sharded score engine + threshold selection, 10k -> 1M pairs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scale_scoring.py --sizes 10000 100000 1000000

What is measured, per size N, each in a fresh child process (peak RSS = its ru_maxrss):
  pass1   score_sharded over the generated Parquet pairs (shard_size 100k) with a hash-based
          stand-in scorer (pdselect.score.testing.HashGaps: K = 4 gaps per pair from a hash of
          pair_id, ~free). It reads pair_id + aspect only: this is the engine's own cost (I/O,
          sharding, atomic part writes), NOT the model cost, which bench/score_throughput.py
          measures and which is linear in unique texts.
  pd      pd_pass: load the K gap columns, exact q_k, PD per shard, write the score parts.
  select  select_parts (method pd, budget 0.3): np.partition threshold + tie pass + filter
          pass writing the selection parts.
  sort    for reference: the in-memory PDSelector.fit (global sort) on the same PD table.
The pair set is generated once from the bundled real texts (pdselect.data.synthetic, 10k-pair
files; size N uses the first N/10k files). The exponent b of time ~ N^b is fitted by least
squares on log-log over the sizes.
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

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
FILE_ROWS = 5_004  # whole inputs (6 pairs each) per generated file


def child(pairs: str, out: str) -> dict:
    import pandas as pd

    from pdselect.score.engine import pd_pass, read_scores, score_sharded
    from pdselect.select.threshold import select_parts
    from pdselect.score.testing import HashGaps
    from pdselect.select.selectors import make_selector

    t = {}
    s = time.perf_counter()
    score_sharded(pairs, HashGaps(4), ASPECTS, out, shard_size=100_000,
                  columns=["pair_id", "aspect"], split=None)
    t["pass1"] = time.perf_counter() - s
    s = time.perf_counter()
    pd_pass(out, ASPECTS, 0.9)
    t["pd"] = time.perf_counter() - s
    s = time.perf_counter()
    summ = select_parts(Path(out) / "pd", Path(out) / "sel", "pd", budget=0.3)
    t["select"] = time.perf_counter() - s
    rss_engine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = read_scores(out, ["pair_id", "aspect", "pd"])
    s = time.perf_counter()
    sel = make_selector("pd", budget=0.3).fit(table)
    t["sort"] = time.perf_counter() - s
    got = pd.concat([pd.read_parquet(p, columns=["selected"])
                     for p in sorted((Path(out) / "sel").glob("part-*.parquet"))])
    assert (got["selected"].to_numpy() == sel.get_support()).all()  # exactness, not timing
    return {**t, "n": len(table), "n_selected": summ["n_selected"],
            "peak_rss_engine_mb": rss_engine,
            "peak_rss_with_inmemory_sort_mb":
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--data", default="", help="folder for the generated pairs (reused)")
    ap.add_argument("--child", nargs=2, metavar=("PAIRS", "OUT"))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    from pdselect.data.synthetic import generate_pairs

    data = Path(a.data or tempfile.mkdtemp(prefix="bench-scale-"))
    s = time.perf_counter()
    n_files = -(-max(a.sizes) // FILE_ROWS)
    generate_pairs(n_files * FILE_ROWS, data / "all", shard_size=FILE_ROWS, seed=2)
    print(f"generated {n_files * FILE_ROWS} pairs in {time.perf_counter() - s:.0f}s -> {data}")
    files = sorted((data / "all").glob("pairs-*.parquet"))
    rows = []
    for n in a.sizes:
        sub = data / f"n{n}"
        sub.mkdir(exist_ok=True)
        for f in files[: -(-n // FILE_ROWS)]:
            if not (sub / f.name).exists():
                (sub / f.name).symlink_to(f)
        out = tempfile.mkdtemp(prefix=f"scale-{n}-")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run([sys.executable, __file__, "--child", str(sub), out], env=env,
                             capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(res.stderr[-3000:])
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"N={r['n']:>8d}  pass1 {r['pass1']:6.2f}s  pd {r['pd']:6.2f}s  select "
              f"{r['select']:6.2f}s  | in-memory sort {r['sort']:6.2f}s  | peak RSS engine "
              f"{r['peak_rss_engine_mb']:5.0f} MB (with in-memory table+sort "
              f"{r['peak_rss_with_inmemory_sort_mb']:5.0f} MB)", flush=True)
    if len(rows) >= 2:
        n = np.log([r["n"] for r in rows])
        for k in ("pass1", "pd", "select", "sort"):
            b = np.polyfit(n, np.log([r[k] for r in rows]), 1)[0]
            print(f"scaling exponent {k:6s}: time ~ N^{b:.2f}")
        tot = np.log([r["pass1"] + r["pd"] + r["select"] for r in rows])
        print(f"scaling exponent total : time ~ N^{np.polyfit(n, tot, 1)[0]:.2f}")


if __name__ == "__main__":
    main()
