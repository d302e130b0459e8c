"""`pdselect run` at scale: every stage as its own process, its wall time and peak RSS.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline_scale.py \\
        --n-pairs 1000000 --prototypes 500 --set proxy.max_pairs_per_aspect=50000 \\
        --work runs/bench_pipeline --out runs/bench_pipeline/after_1m.json

Input: a rated table (source generic, wide: 4 responses per input, 4 aspects + overall, 1-5,
``pdselect.data.synthetic.generate_rated``), the realistic large input that exercises the
aggregate stage too. N pairs = 6 per input, so N/6 inputs and 2N/3 response rows. The texts
are recombined real sentences from the bundled data, drawn from a bounded pool of
``--prototypes`` inputs (4 responses each): the frozen MiniLM encoder (the default proxy
backend) embeds 4 * prototypes unique (input, response) texts, whatever N is, so the cold
encode fits a CPU (~13 texts/s on one thread) while every other stage sees all N pairs.

Each stage runs as ``pdselect <stage> -c CFG`` in a child process; its peak RSS is that child's
own ru_maxrss (``os.wait4``), its rows and the embedding cache's state (files and bytes before
and after; cold = empty at start) are recorded per stage into ``--out`` (JSON). The cache
lives in ``<work>/cache``: run a small N first to warm it (every prototype appears once
N/6 >= prototypes), then the large N reads it warm.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

STAGES = ["ingest", "aggregate", "proxy", "score", "select", "report"]
ROOT = Path(__file__).resolve().parents[1]


def make_config(work: Path, data: Path, n_pairs: int, extra: dict) -> Path:
    cfg = {"run_dir": str(work / f"run_{n_pairs}"), "seed": 0,
           "data": {"source": "generic", "path": str(data), "shape": "wide",
                    "aspects": ["helpfulness", "honesty", "instruction_following",
                                "truthfulness"],
                    "scales": {a: [1, 5] for a in ["helpfulness", "honesty",
                                                   "instruction_following", "truthfulness",
                                                   "overall"]}},
           "proxy": {"cache_dir": str(work / "cache")},
           "select": {"method": "pd", "budget": 0.3}}
    for dotted, value in extra.items():  # --set proxy.max_pairs_per_aspect=50000
        node = cfg
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    path = work / f"config_{n_pairs}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cache_state(cache: Path) -> dict:
    files = [f for f in cache.rglob("*") if f.is_file()] if cache.exists() else []
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def rows_of(run: Path, stage: str) -> dict:
    """The row counts the stage's meta / marker records."""
    meta = run / stage / "meta.json"
    d = json.loads(meta.read_text()) if meta.exists() else {}
    keys = ("n_responses", "n_inputs", "n_pairs", "n_train", "n_test", "n_scored", "n_pool",
            "n_selected")
    return {k: d[k] for k in keys if k in d}


def run_stage(stage: str, cfg: Path, log: Path, cache: Path, run: Path) -> dict:
    before = cache_state(cache)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "pdselect"), stage, "-c", str(cfg)]
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n=== {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not a running max
    wall = time.perf_counter() - t0
    after = cache_state(cache)
    out = {"stage": stage, "rc": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
           "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
           "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
           "cache": "cold" if before["files"] == 0 else "warm",
           "cache_before": before, "cache_after": after, "rows": rows_of(run, stage),
           "load_avg_after": os.getloadavg()}
    print(json.dumps(out), flush=True)
    return out


def write_scores(data: Path, aspects: list[str]) -> Path:
    """A user's score file for the rated table ``data``: ids + one noisy score per aspect."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = data.with_name(data.stem + "_scores.parquet")
    if out.exists():
        return out
    t = pq.read_table(data, columns=["input_id", "response_id", *aspects])
    rng = np.random.default_rng(0)
    cols = {"input_id": t["input_id"], "response_id": t["response_id"]}
    for a in aspects:
        cols[f"score_{a}"] = pa.array(t[a].to_numpy(zero_copy_only=False)
                                      + rng.normal(0, 0.8, len(t)))
    pq.write_table(pa.table(cols), out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-pairs", type=int, required=True, help="pairs (6 per input)")
    ap.add_argument("--prototypes", type=int, default=1000,
                    help="unique inputs whose texts are reused (unique texts = 4x this)")
    ap.add_argument("--work", default="runs/bench_pipeline")
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--stages", nargs="*", default=STAGES)
    ap.add_argument("--set", nargs="*", default=[], help="dotted config overrides key=value")
    ap.add_argument("--scores", action="store_true",
                    help="proxy.backend=scores: write per-response scores (rating + N(0, 0.8) "
                         "noise, columns score_<aspect>, keyed by input_id + response_id) and "
                         "score with them: no model is loaded")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from pdselect.data.synthetic import generate_rated

    work = Path(a.work).resolve()
    n_inputs = -(-a.n_pairs // 6)
    data = work / f"rated_{n_inputs}_p{a.prototypes}.parquet"
    t0 = time.perf_counter()
    info = generate_rated(n_inputs, data, n_prototypes=a.prototypes)
    info["generate_s"] = round(time.perf_counter() - t0, 1)
    extra = dict(kv.split("=", 1) for kv in a.set)
    if a.scores:
        t0 = time.perf_counter()
        extra.update({"proxy.backend": "scores",
                      "proxy.scores_path": str(write_scores(data, info["aspects"]))})
        info["scores_s"] = round(time.perf_counter() - t0, 1)
    cfg = make_config(work, data, a.n_pairs, extra)
    run = Path(yaml.safe_load(cfg.read_text())["run_dir"])
    res = {"command": " ".join(sys.argv), "data": info, "config": str(cfg),
           "load_avg_start": os.getloadavg(), "cpus": os.cpu_count(), "stages": []}
    for stage in a.stages:
        r = run_stage(stage, cfg, work / f"log_{a.n_pairs}.txt", work / "cache", run)
        res["stages"].append(r)
        Path(a.out).write_text(json.dumps(res, indent=1))
        if r["rc"] != 0:
            sys.exit(f"{stage} failed (rc {r['rc']}): see {work / f'log_{a.n_pairs}.txt'}")


if __name__ == "__main__":
    main()
