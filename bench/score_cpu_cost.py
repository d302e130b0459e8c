"""CPU-side cost of scoring: everything around the encoder's forward, on this machine's CPU.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/score_cpu_cost.py \
        --n-pairs 100000 --work /tmp/scc --out /tmp/scc/cost.json

A GPU can speed up the encoder forward, nothing else. This benchmark replaces the encoder's
device step (model forward + mean pool + L2, all of which run on the GPU there) with a
zero-cost stand-in that returns zero vectors of the right shape (``Encoder.device_step``, the
one seam), and runs the REAL score path on generated pairs (pdselect.data.synthetic,
UltraFeedback shape, 4 aspects, features ``both``, 4 linear heads): read the shard, unique
texts, keys (sha256), cache lookups, tokenise (once per unique string), frame, length buckets,
padding, cache writes (checksummed shards), heads, gaps, Parquet parts, then the PD pass.
Every unique text costs what the GPU cannot remove; the result is reported per unique
ENCODED text (joint + response texts) and as a ratio to the bare fast tokenizer on the same
texts in the same process:

  bare_tok_encoded : one batch call per encoded text (joint texts as (input, response) pairs,
                     responses alone): what a path that tokenises every encoded text costs;
  bare_tok_unique  : one batch call over the unique strings (inputs + responses), the floor of
                     tokenisation (pdselect tokenises each unique string once).

Wall times and ratios are reported, and the same in process CPU time (user + system, all
threads), which other jobs on a shared machine inflate less. A second run under cProfile
(fresh cache) gives the top functions by own time (``--top``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (less sensitive than wall time to
    other jobs on a shared machine; tokenizer threads count too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class ZeroStep:
    """The stand-in for the device step: (b, d) float32 vectors, O(b) work. Zero except two
    columns that depend on the text alone (its length, its second token id), so the heads
    give gaps that vary and the PD pass has something to rank."""

    def __init__(self, dim: int):
        self.dim = dim

    def __call__(self, inp, mask):
        import torch

        out = torch.zeros((inp.shape[0], self.dim), dtype=torch.float32)
        out[:, 0] = mask.sum(1).float() / 512
        out[:, 1] = inp[:, min(1, inp.shape[1] - 1)].float() / 30_000
        return out


def build(dtype: str, cache_dir: str, batch_size: int, device: str):
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.reward.base import ProxyModels
    from pdselect.reward.frozen import FrozenScorer, make_store
    from pdselect.reward.heads import BTHeads

    cfg = ProxyConfig(cache_dir=cache_dir, features="both", dtype=dtype, batch_size=batch_size,
                      device=device)
    store = make_store(cfg)
    dim = int(store.encoder.model.config.hidden_size)        # loads the model, untimed
    step = ZeroStep(dim)
    if hasattr(store.encoder, "device_step"):
        store.encoder.device_step = step
    else:  # the code before the seam existed: replace the whole forward (same work removed)
        store.encoder.forward = step
    heads = BTHeads(len(ASPECTS), 2 * dim, "linear")
    with torch.no_grad():
        heads.w.copy_(torch.randn(len(ASPECTS), 2 * dim,
                                  generator=torch.Generator().manual_seed(0)))
    return ProxyModels(ASPECTS, {}, FrozenScorer(store, heads.eval(), 1, "both")), store


def score_once(pairs_dir: Path, work: Path, a, tag: str) -> tuple[dict, object]:
    from pdselect.score.engine import pd_pass, score_sharded

    cache = tempfile.mkdtemp(prefix=f"cache-{tag}-", dir=work)
    models, store = build(a.dtype, cache, a.batch_size, a.device)
    out = Path(tempfile.mkdtemp(prefix=f"score-{tag}-", dir=work))
    t, c = time.perf_counter(), cpu_seconds()
    s = score_sharded(pairs_dir, models.gaps, ASPECTS, out, shard_size=a.shard_size)
    t1 = time.perf_counter() - t
    pd_pass(out, ASPECTS, 0.9)
    total, cpu = time.perf_counter() - t, cpu_seconds() - c
    enc = store.encoder
    return {"pairs": s["n_input_rows"], "unique_texts_encoded": enc.n_encoded,
            "tokenised_strings": getattr(store.framer, "n_tokenised", None),
            "pass1_s": round(t1, 3), "total_s": round(total, 3), "cpu_s": round(cpu, 3),
            "us_per_unique_text": round(1e6 * total / max(enc.n_encoded, 1), 2),
            "cpu_us_per_unique_text": round(1e6 * cpu / max(enc.n_encoded, 1), 2),
            "padding_share": round(enc.padding_share, 4)}, out


def bare_tokenizer(pairs_dir: Path, tok, reps: int = 2) -> dict:
    """Fastest of ``reps`` timings of the fast tokenizer's batch call on the unique texts."""
    import pandas as pd

    p = pd.read_parquet(pairs_dir, columns=["input", "chosen", "rejected"])
    both = pd.DataFrame({"input": np.concatenate([p["input"].to_numpy()] * 2),
                         "response": np.concatenate([p["chosen"].to_numpy(),
                                                     p["rejected"].to_numpy()])})
    joint = both.drop_duplicates()
    resp = pd.unique(both["response"]).tolist()
    inputs = pd.unique(p["input"]).tolist()
    out = {"encoded_texts": len(joint) + len(resp), "unique_strings": len(inputs) + len(resp)}
    ji, jr, uniq = joint["input"].tolist(), joint["response"].tolist(), inputs + resp
    step = 50_000  # chunks: the tokenizer's Python lists of 1M texts would need ~20 GB

    def encoded():
        for i in range(0, len(ji), step):
            tok(ji[i: i + step], jr[i: i + step])
        for i in range(0, len(resp), step):
            tok(resp[i: i + step])

    def unique():
        for i in range(0, len(uniq), step):
            tok(uniq[i: i + step], add_special_tokens=False)

    for name, calls in {"bare_tok_encoded_s": encoded, "bare_tok_unique_s": unique}.items():
        best, best_cpu = np.inf, np.inf
        for _ in range(reps):
            t, c = time.perf_counter(), cpu_seconds()
            calls()
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, cpu_seconds() - c)
        out[name] = round(best, 3)
        out[name[:-2] + "_cpu_s"] = round(best_cpu, 3)
    return out


def profile_once(pairs_dir: Path, work: Path, a) -> str:
    prof = cProfile.Profile()
    prof.enable()
    score_once(pairs_dir, work, a, "prof")
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(a.top)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-pairs", type=int, default=100_000)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--work", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--as-cuda", action="store_true", help="run the CUDA branch of the embed "
                    "path on the CPU (chunk and batch preparation in threads, wide token-budget "
                    "batches, one copy back per chunk; pinning is a no-op): the CPU cost a GPU "
                    "run pays")
    a = ap.parse_args(argv)
    if a.as_cuda:
        import torch

        import pdselect.reward.embed as E

        E.torch_device_type = lambda d: "cuda"
        torch.Tensor.pin_memory = lambda self: self
    from pdselect.data.synthetic import generate_pairs

    work = Path(a.work or tempfile.mkdtemp(prefix="score-cpu-cost-"))
    pairs_dir = work / f"pairs_{a.n_pairs}"
    if not pairs_dir.exists():
        generate_pairs(a.n_pairs, pairs_dir, shard_size=a.shard_size, seed=0)
    res = {"n_pairs": a.n_pairs, "dtype": a.dtype, "device": a.device, "as_cuda": a.as_cuda,
           "batch_size": a.batch_size, "shard_size": a.shard_size,
           "loadavg_start": os.getloadavg()[0]}
    run, _ = score_once(pairs_dir, work, a, "timed")
    run["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    res["score"] = run
    if a.out:  # partial result first: the tokenizer baseline of 1M pairs takes minutes
        Path(a.out).write_text(json.dumps(res, indent=1))
    from transformers import AutoTokenizer

    from pdselect.reward.embed import resolve_encoder_path

    tok = AutoTokenizer.from_pretrained(resolve_encoder_path("minilm"))
    res["tokenizer"] = bare = bare_tokenizer(pairs_dir, tok, reps=2 if a.n_pairs <= 200_000
                                             else 1)
    n = run["unique_texts_encoded"]
    res["bare_tok_encoded_us_per_text"] = round(1e6 * bare["bare_tok_encoded_s"] / n, 2)
    res["bare_tok_unique_us_per_text"] = round(1e6 * bare["bare_tok_unique_s"] / n, 2)
    res["ratio_to_bare_tok_encoded"] = round(run["total_s"] / bare["bare_tok_encoded_s"], 3)
    res["ratio_to_bare_tok_unique"] = round(run["total_s"] / bare["bare_tok_unique_s"], 3)
    res["cpu_ratio_to_bare_tok_encoded"] = round(run["cpu_s"] / bare["bare_tok_encoded_cpu_s"], 3)
    res["cpu_ratio_to_bare_tok_unique"] = round(run["cpu_s"] / bare["bare_tok_unique_cpu_s"], 3)
    res["loadavg_end"] = os.getloadavg()[0]
    if not a.no_profile:
        res["profile_top"] = profile_once(pairs_dir, work, a)
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text if a.no_profile else json.dumps({k: v for k, v in res.items()
                                                 if k != "profile_top"}, indent=1))
    if not a.no_profile:
        print(res["profile_top"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
