"""How close pdselect's scoring path is to the encoder's floor, in ONE process on the SAME batches.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/encoder_floor.py \
        --n-pairs 120 --reps 4 --dtypes float32 bfloat16 --out /tmp/floor.json

The floor of frozen-encoder scoring is one encoder forward per unique text. For each dtype:

(a) ``forward``: the raw ``model(input_ids, attention_mask)`` calls alone, replaying the exact
    padded token batches that (b) formed (recorded in a first, untimed pass of (b));
(b) ``pdselect``: ``ProxyModels.gaps`` with a COLD embedding cache (a new cache folder each
    repetition): unique texts, tokenise (once per unique text) + frame + length-bucketed batches
    + forward + mean pool + L2 + cache write (sha256-checked shards) + K heads;
(c) ``naive``: K reward models sharing the backbone, no dedup and no cache: for each aspect,
    encode chosen and rejected of every pair (joint + response features) and apply that
    aspect's head (16 forwards per pair), on the same pairs (``--naive-pairs``: a sample of
    whole inputs instead, whose text lengths differ from the whole set's).

Repetitions of (a) and (b) are interleaved (a b a b ...) so load drifts hit both; the table
reports the fastest repetition of each and the median of the per-repetition ratios (b)/(a);
every repetition is in the JSON. Pairs/s of (c)
comes from its single run. Also reported: the padding share of (b)'s batches (padded positions /
all positions), tokenisations vs unique texts, and max |gap_(b) - gap_(c)| on the sample.
Pairs: ``pdselect.data.synthetic`` (UltraFeedback shape: 4 responses, 6 pairs per input).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def build(dtype: str, cache_dir: str, batch_size: int):
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.reward.base import ProxyModels
    from pdselect.reward.frozen import FrozenScorer, make_store
    from pdselect.reward.heads import BTHeads

    cfg = ProxyConfig(cache_dir=cache_dir, features="both", dtype=dtype, batch_size=batch_size)
    store = make_store(cfg)
    heads = BTHeads(len(ASPECTS), 2 * store.dim, "linear")
    with torch.no_grad():
        heads.w.copy_(torch.randn(len(ASPECTS), 2 * store.dim,
                                  generator=torch.Generator().manual_seed(0)))
    store.encoder.encode_ids(store.framer.response_ids(["warm up"]))  # load outside timings
    return ProxyModels(ASPECTS, {}, FrozenScorer(store, heads.eval(), 1, "both")), store, heads


def cold(store, root: str):
    from pdselect.reward.embed import EmbeddingCache

    store.cache = EmbeddingCache(tempfile.mkdtemp(dir=root), store.encoder.id)


def record_batches(models, store, pairs, root: str) -> list:
    """Run (b) once, untimed, keeping every padded batch the encoder receives."""
    enc, seen = store.encoder, []
    fwd = enc.forward

    def keep(inp, mask):
        seen.append((inp.clone(), mask.clone()))
        return fwd(inp, mask)

    enc.forward = keep
    cold(store, root)
    models.gaps(pairs)
    enc.forward = fwd
    return seen


def time_forward(enc, batches) -> float:
    import torch

    t = time.perf_counter()
    with torch.inference_mode():
        for inp, mask in batches:
            with enc.autocast():
                enc.model(input_ids=inp.to(enc.device), attention_mask=mask.to(enc.device))
    return time.perf_counter() - t


def time_pdselect(models, store, pairs, root: str) -> tuple[float, np.ndarray, dict]:
    enc, fr = store.encoder, store.framer
    cold(store, root)
    n0, t0, p0, k0 = enc.n_encoded, enc.n_tokens, enc.n_padded, getattr(fr, "n_tokenised", 0)
    t = time.perf_counter()
    gaps = models.gaps(pairs)
    dt = time.perf_counter() - t
    real, pad = enc.n_tokens - t0, enc.n_padded - p0
    return dt, gaps, {"real_tokens": real, "texts_encoded": enc.n_encoded - n0, "tokenisations":
                      getattr(fr, "n_tokenised", 0) - k0, "padding_share": pad / (real + pad)}


def time_naive(store, heads, pairs) -> tuple[float, np.ndarray, int]:
    """(seconds, gaps, texts encoded) of score_throughput's naive K-model baseline."""
    from score_throughput import naive_gaps  # bench/ is sys.path[0] when run as a script

    n0 = store.encoder.n_encoded
    t = time.perf_counter()
    gaps = naive_gaps(store, heads, pairs)
    return time.perf_counter() - t, gaps, store.encoder.n_encoded - n0


def run_dtype(dtype: str, pairs: pd.DataFrame, sample: pd.DataFrame, a, root: str) -> dict:
    models, store, heads = build(dtype, tempfile.mkdtemp(dir=root), a.batch_size)
    batches = record_batches(models, store, pairs, root)
    fwd, pds, info = [], [], {}
    for _ in range(a.reps):                      # interleaved: a b a b ...
        fwd.append(time_forward(store.encoder, batches))
        dt, gaps, info = time_pdselect(models, store, pairs, root)
        pds.append(dt)
    tok_b = info.pop("real_tokens")
    k0 = store.encoder.n_tokens
    t_naive, g_naive, n_naive = time_naive(store, heads, sample)
    n_tok_naive = store.encoder.n_tokens - k0
    idx = pairs.index.get_indexer(sample.index)
    n, m = len(pairs), len(sample)
    row = {"dtype": store.encoder.dtype, "encoder_id": store.encoder.id,
           "n_pairs": n, "naive_pairs": m, "n_batches": len(batches),
           "batch_tokens": int(sum(int(x.numel()) for x, _ in batches)),
           "forward_s": fwd, "pdselect_s": pds, "naive_s": t_naive,
           "naive_texts_encoded": n_naive, **info,
           "unique_texts": int(info["texts_encoded"]),
           "forward_pairs_per_s": n / min(fwd), "pdselect_pairs_per_s": n / min(pds),
           "naive_pairs_per_s": m / t_naive,
           "max_abs_gap_diff_vs_naive": float(np.abs(gaps[idx] - g_naive).max())}
    row["pdselect_over_forward"] = min(pds) / min(fwd)
    row["pdselect_over_forward_median_of_reps"] = float(np.median(np.array(pds) / np.array(fwd)))
    row["naive_tokens_per_pair"] = n_tok_naive / m
    row["pdselect_tokens_per_pair"] = tok_b / n
    row["expected_ratio_from_tokens"] = (row["naive_tokens_per_pair"]
                                         / row["pdselect_tokens_per_pair"])
    row["pdselect_over_naive"] = row["pdselect_pairs_per_s"] / row["naive_pairs_per_s"]
    return row


def padding_at_scale(root: str, seed: int, n_texts: int = 4096) -> list[dict]:
    """Padding share of one embedding chunk (SHARD_ROWS = 4096 unique texts) from token
    lengths alone: fixed-size sorted batches vs pdselect's length buckets (float32; GPU
    sizes) and the canonical-length batches of a CPU bfloat16 forward."""
    from pdselect.reward.embed import TextFramer, length_batches
    from pdselect.reward.frozen import make_store
    from pdselect.config import ProxyConfig
    from pdselect.data.synthetic import generate_pairs

    generate_pairs(n_texts * 6 // 4, f"{root}/scale", shard_size=10**7, seed=seed + 1)
    p = pd.read_parquet(f"{root}/scale")
    store = make_store(ProxyConfig(cache_dir=f"{root}/c"))
    fr: TextFramer = store.framer
    u = pd.concat([p[["input", "chosen"]].set_axis(["i", "r"], axis=1),
                   p[["input", "rejected"]].set_axis(["i", "r"], axis=1)]).drop_duplicates()
    u = u.iloc[:n_texts]
    out = []
    for kind, ids in (("joint", fr.joint_ids(u["i"].tolist(), u["r"].tolist())),
                      ("response", fr.response_ids(u["r"].tolist()))):
        L = np.array([len(x) for x in ids])
        for bs, min_rows in ((64, 4), (256, 64)):
            def share(batches):
                tot = sum(len(b) * int(L[b].max()) for b in batches)
                return 1 - L.sum() / tot, len(batches)
            fixed = share(length_batches(L, bs, max_pad_share=1.0))
            buck = share(length_batches(L, bs, min_rows=min_rows))
            canon = length_batches(L, bs, granule=8)
            tot = sum(len(b) * int(-(-L[b].max() // 8) * 8) for b in canon)
            out.append({"kind": kind, "texts": len(L), "batch_size": bs, "min_rows": min_rows,
                        "fixed": fixed[0], "fixed_batches": fixed[1], "bucketed": buck[0],
                        "bucketed_batches": buck[1], "canonical8": 1 - L.sum() / tot,
                        "canonical8_batches": len(canon)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-pairs", type=int, default=240)
    ap.add_argument("--naive-pairs", type=int, default=0, help="0: all the pairs")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="")
    ap.add_argument("--padding-only", action="store_true", help="only the padding analysis")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from pdselect.data.synthetic import generate_pairs

    root = tempfile.mkdtemp(prefix="bench-floor-")
    if a.padding_only:
        a.dtypes = []
    generate_pairs(a.n_pairs, f"{root}/pairs", shard_size=10**7, seed=a.seed)
    pairs = pd.read_parquet(f"{root}/pairs").iloc[: a.n_pairs]
    sample = pairs                       # (c) on the same pairs: the same texts and lengths
    if 0 < a.naive_pairs < len(pairs):   # or on whole inputs drawn at random (noisier)
        ids = pairs["input_id"].drop_duplicates().sample(frac=1.0, random_state=a.seed)
        sample = pairs[pairs["input_id"].isin(ids.iloc[: max(1, a.naive_pairs // 6)])]
    load = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    rows = [run_dtype(d, pairs, sample, a, root) for d in a.dtypes]
    scale = padding_at_scale(root, a.seed)
    load.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"load before / after: {load[0]}\n                     {load[1]}")
    print("| dtype | (a) forward s | (b) pdselect s | (b)/(a) fastest | (b)/(a) median of "
          "reps | (c) naive pairs/s | (b) pairs/s | (b)/(c) | padding share | "
          "texts / tokenisations |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dtype']} | {min(r['forward_s']):.2f} | {min(r['pdselect_s']):.2f} | "
              f"{r['pdselect_over_forward']:.3f} | "
              f"{r['pdselect_over_forward_median_of_reps']:.3f} | {r['naive_pairs_per_s']:.2f} | "
              f"{r['pdselect_pairs_per_s']:.2f} | {r['pdselect_over_naive']:.1f}x | "
              f"{r['padding_share']:.3f} | {r['texts_encoded']} / {r['tokenisations']} |")
    for r in rows:
        print(f"{r['dtype']}: (b)/(c) expected from the real tokens each encoded: "
              f"{r['expected_ratio_from_tokens']:.1f}x ({r['naive_tokens_per_pair']:.0f} vs "
              f"{r['pdselect_tokens_per_pair']:.0f} tokens per pair)")
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            fwd = min(base["forward_s"]) / min(r["forward_s"])
            path = min(base["pdselect_s"]) / min(r["pdselect_s"])
            print(f"{r['dtype']} vs {base['dtype']}: forward {fwd:.2f}x, pdselect path {path:.2f}x")
    for r in rows:
        print(f"{r['dtype']}: max |gap pdselect - gap naive| on {r['naive_pairs']} pairs = "
              f"{r['max_abs_gap_diff_vs_naive']:.2e}")
    for r in scale:
        print(f"padding share, {r['texts']} unique {r['kind']} texts, batch {r['batch_size']}: "
              f"fixed-size sorted batches {r['fixed']:.3f} ({r['fixed_batches']} batches), "
              f"pdselect's buckets (min {r['min_rows']} rows) {r['bucketed']:.3f} "
              f"({r['bucketed_batches']} batches); canonical lengths (multiples of 8: CPU "
              f"bfloat16) {r['canonical8']:.3f} ({r['canonical8_batches']} batches)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "load": load, "rows": rows, "padding_at_scale": scale},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
