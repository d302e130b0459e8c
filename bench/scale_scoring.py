"""Scaling of the sharded score engine + threshold selection, 10k -> 1M pairs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scale_scoring.py --sizes 10000 100000 1000000
    OMP_NUM_THREADS=1 .venv/bin/python bench/scale_scoring.py --sizes 10000 --out-roots local memory

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
``--out-roots local memory`` runs the same scoring, per size, once into a local temp folder and
once into a ``memory://`` root (fsspec's in-process object store: every part, JSON manifest and
selection part goes through score/storage.py's one-put writes), and prints both times side by
side: the cost of the object-store path without any network. The inputs stay local; the
memory root's peak RSS includes the stored outputs themselves.
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

    from pdselect.score import storage
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
    summ = select_parts(f"{out}/pd", f"{out}/sel", "pd", budget=0.3)   # a path or a URI
    t["select"] = time.perf_counter() - s
    rss_engine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = read_scores(out, ["pair_id", "aspect", "pd"])
    s = time.perf_counter()
    sel = make_selector("pd", budget=0.3).fit(table)
    t["sort"] = time.perf_counter() - s
    got = pd.concat([storage.read_table(p, columns=["selected"]).to_pandas()
                     for p in storage.glob(storage.resolve(f"{out}/sel"), "part-*.parquet")])
    assert (got["selected"].to_numpy() == sel.get_support()).all()  # exactness, not timing
    return {**t, "n": len(table), "n_selected": summ["n_selected"],
            "peak_rss_engine_mb": rss_engine,
            "peak_rss_with_inmemory_sort_mb":
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(pairs: Path, n: int, root: str) -> dict:
    """One size into one output root, in a fresh process (its own peak RSS, its own memory://)."""
    out = (tempfile.mkdtemp(prefix=f"scale-{n}-") if root == "local"
           else f"memory://bench-scale-{n}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, __file__, "--child", str(pairs), out], env=env,
                         capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "root": root}


def report(r: dict) -> None:
    print(f"N={r['n']:>8d} {r['root']:6s}  pass1 {r['pass1']:6.2f}s  pd {r['pd']:6.2f}s  "
          f"select {r['select']:6.2f}s  total {r['pass1'] + r['pd'] + r['select']:6.2f}s  | "
          f"in-memory sort {r['sort']:6.2f}s  | peak RSS engine {r['peak_rss_engine_mb']:5.0f} "
          f"MB (with in-memory table+sort {r['peak_rss_with_inmemory_sort_mb']:5.0f} MB)",
          flush=True)


def exponents(rows: list[dict], root: str) -> None:
    n = np.log([r["n"] for r in rows])
    for k in ("pass1", "pd", "select", "sort"):
        b = np.polyfit(n, np.log([r[k] for r in rows]), 1)[0]
        print(f"[{root}] scaling exponent {k:6s}: time ~ N^{b:.2f}")
    tot = np.log([r["pass1"] + r["pd"] + r["select"] for r in rows])
    print(f"[{root}] scaling exponent total : time ~ N^{np.polyfit(n, tot, 1)[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--data", default="", help="folder for the generated pairs (reused)")
    ap.add_argument("--out-roots", nargs="+", choices=["local", "memory"], default=["local"],
                    help="where the engine writes: a local temp folder and/or memory://")
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
    rows: dict[str, list[dict]] = {root: [] for root in a.out_roots}
    for n in a.sizes:
        sub = data / f"n{n}"
        sub.mkdir(exist_ok=True)
        for f in files[: -(-n // FILE_ROWS)]:
            if not (sub / f.name).exists():
                (sub / f.name).symlink_to(f)
        for root in a.out_roots:
            rows[root].append(run_child(sub, n, root))
            report(rows[root][-1])
        if len(rows) == 2:
            t = {root: r[-1]["pass1"] + r[-1]["pd"] + r[-1]["select"] for root, r in rows.items()}
            print(f"N={rows['local'][-1]['n']:>8d} memory/local total time: "
                  f"{t['memory'] / t['local']:.2f}x")
    for root, rs in rows.items():
        if len(rs) >= 2:
            exponents(rs, root)


if __name__ == "__main__":
    main()
