"""Write a large realistic pair set (Parquet shards) from the bundled real texts.

    .venv/bin/python bench/make_pairs.py --n-pairs 1000000 --out bench_data/pairs_1m

UltraFeedback shape: 4 responses per input, all 6 pairs, 4 aspects. Memory is one shard;
finished shards are kept when re-run. See pdselect.data.synthetic for how texts are built.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from pdselect.data.synthetic import generate_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--n-pairs", type=int, default=1_000_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = time.perf_counter()
    meta = generate_pairs(a.n_pairs, a.out, a.shard_size, a.seed)
    meta["seconds"] = round(time.perf_counter() - t, 2)
    meta["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
