"""How good must YOUR per-aspect scores be for PD to beat the margin? (issue 16, scores backend)

On a bundled set with true per-aspect ratings, the user's "scores" are simulated as the true
rating plus Gaussian noise of a given std (in units of each aspect's rating std), written to a
score file, and the REAL scores backend (reward/scores.py: file -> lookup -> agreement
diagnostics -> the standardised-mean margin) feeds PD. For each noise level: each aspect
score's agreement with its own labels, and the conflict AUC ("pair agrees with the hidden
overall preference") of -PD and of the margin, over seeds (the aggregation seed and the noise
draw). Noise 0 is PD from the true ratings (PD-rati) through the same code path.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/scores_study.py \\
        --datasets summeval_op usr_topical_chat --conflicts natural 0.3 --seeds 0 1 2 \\
        --noise 0 0.5 1 2 --out docs/results/scores_study.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from auc_study import cell_pairs  # noqa: E402

from pdselect.config import load_config  # noqa: E402
from pdselect.data import read_source  # noqa: E402
from pdselect.data.rejects import RejectLog  # noqa: E402
from pdselect.data.schema import public_view  # noqa: E402
from pdselect.report.evaluate import roc_auc  # noqa: E402
from pdselect.reward.scores import scores_models  # noqa: E402
from pdselect.score.table import score_table  # noqa: E402
from pdselect.stats import mean_se  # noqa: E402


def noisy_scores(rated, aspects, noise: float, seed: int, path: Path) -> Path:
    """The rated table's texts + per-aspect scores = rating + N(0, (noise * std)^2)."""
    rng = np.random.default_rng([seed, 97])
    df = rated.df[["input", "response"]].copy()
    for a in aspects:
        r = rated.df[a].to_numpy(np.float64)
        sd = np.nanstd(r) or 1.0
        df[f"score_{a}"] = r + rng.normal(0.0, noise * sd, len(r))
    df.to_parquet(path)
    return path


def cell(cfg, rated, seed: int, noise: float, work: Path) -> dict:
    train, aspects = cell_pairs(cfg, rated, seed)
    public = public_view(train)
    path = noisy_scores(rated, aspects, noise, seed, work / f"s_{seed}_{noise}.parquet")
    models, unified = scores_models(public, aspects, cfg.proxy, seed, str(path), None, True)
    table, _ = score_table(public, models.gaps(public), aspects, cfg.score.gamma,
                           unified.gaps(public)[:, 0])
    agrees = train["h_agrees_overall"].to_numpy(np.float64)
    known = ~np.isnan(agrees)
    pos = agrees[known] == 1
    return {"pd": roc_auc(-table.loc[known, "pd"].to_numpy(), pos),
            "margin": roc_auc(table.loc[known, "margin"].to_numpy(), pos),
            "score_acc": float(np.mean([m["val_accuracy"] for m in models.metrics.values()])),
            "n_pairs": int(len(train))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["summeval_op", "usr_topical_chat"])
    ap.add_argument("--conflicts", nargs="+", default=["natural", "0.3"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ds in args.datasets:
            for conflict in args.conflicts:
                over = [f"data.source={ds}", "proxy.backend=scores"]
                if conflict != "natural":
                    over.append(f"aggregate.conflict_level={conflict}")
                cfg = load_config(None, over)
                rated = read_source(cfg.data, RejectLog("ingest"))
                for noise in args.noise:
                    res = [cell(cfg, rated, s, noise, Path(tmp)) for s in args.seeds]
                    row = {"dataset": ds, "conflict": conflict, "noise": noise,
                           "seeds": args.seeds, "cells": res}
                    for k in ("score_acc", "pd", "margin"):
                        row[k] = mean_se([r[k] for r in res])
                    row["pd_minus_margin"] = mean_se([r["pd"] - r["margin"] for r in res])
                    rows.append(row)
                    print(f"| {ds} | {conflict} | {noise:g} | " + " | ".join(
                        f"{row[k][0]:.3f} ± {row[k][1]:.3f}" for k in
                        ("score_acc", "pd", "margin", "pd_minus_margin")) + " |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
