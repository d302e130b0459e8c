"""End-to-end selection cost vs the cost of one DPO epoch on the selected subset, same machine.

    python bench/selection_vs_dpo.py [--source usr_topical_chat] [--dpo-steps 3] [--full-epoch]

Selection = ingest -> aggregate -> proxy -> score -> select with a COLD embedding cache (a fresh
temporary cache folder, so embedding every text is counted). DPO = TRL DPO (LoRA, SmolLM2-135M,
the CPU default) on the selection: setup (model load + reference log-prob precompute over the
whole subset) is measured in full; training is measured over ``--dpo-steps`` steps and
extrapolated to one epoch (steps/epoch x s/step), unless ``--full-epoch`` trains it all.
Prints both, their ratio, and peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="usr_topical_chat")
    ap.add_argument("--budget", type=float, default=0.3)
    ap.add_argument("--dpo-steps", type=int, default=3)
    ap.add_argument("--full-epoch", action="store_true")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="pdselect-bench-"))
    models_cache = os.environ.get("PDSELECT_CACHE")  # keep the converted SmolLM2 if present
    os.environ["PDSELECT_CACHE"] = str(tmp / "cache")  # cold embedding cache

    from pdselect.config import load_config
    from pdselect.pipeline import run_pipeline

    cfg = load_config(None, [f"run_dir={tmp / 'run'}", f"data.source={args.source}",
                             f"select.budget={args.budget}", "select.compare=[pd]"])
    t0 = time.perf_counter()
    root = run_pipeline(cfg, stages=["ingest", "aggregate", "proxy", "score", "select"])
    t_select = time.perf_counter() - t0
    stages = {k: v["wall_seconds"] for k, v in
              json.loads((root / "manifest.json").read_text())["stages"].items()}

    if models_cache:
        os.environ["PDSELECT_CACHE"] = models_cache
    else:
        os.environ.pop("PDSELECT_CACHE")
    from pdselect.align.dpo import align

    n_sel = json.loads((root / "select" / "meta.json").read_text())["n_selected"]
    steps_epoch = math.ceil(n_sel / args.batch_size)
    acfg = load_config(None, ["align.lora=true", f"align.max_length={args.max_length}",
                              f"align.batch_size={args.batch_size}", "align.epochs=1",
                              f"align.max_steps={-1 if args.full_epoch else args.dpo_steps}"]).align
    m = align(root / "select" / "dpo", acfg, tmp / "align", seed=0)
    s_step = m["train_runtime_s"] / m["steps"]
    t_dpo = m["setup_s"] + s_step * steps_epoch
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"source={args.source} selected={n_sel} pairs; selection stages (cold cache): "
          + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    print(f"selection total        {t_select:8.1f} s")
    print(f"DPO setup              {m['setup_s']:8.1f} s  (model load + reference log-probs)")
    how = "measured" if args.full_epoch else f"extrapolated from {m['steps']} steps"
    print(f"DPO train              {s_step:8.2f} s/step x {steps_epoch} steps/epoch ({how})")
    print(f"DPO epoch              {t_dpo:8.1f} s")
    print(f"selection / DPO epoch  {t_select / t_dpo:8.3f}")
    print(f"peak RSS               {rss:8.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
