"""Proxy study (issue 16): frozen heads vs the multihead fine-tuned proxy, out of fold.

Per dataset x conflict level x seed x variant: each aspect's out-of-fold proxy accuracy
(``proxy.cross_fit`` folds by input), and the conflict AUC ("pair agrees with the hidden
overall preference") of out-of-fold PD, of the unified model's margin, of PD from the TRUE
ratings, and PD - margin. Same protocol as bench/auc_study.py (aggregate -> train pairs ->
public_view -> proxies -> score_table), in-process. Variants are dotted overrides, as
``pdselect run ... key=value`` takes them; the multihead variant trains aspects + unified as
ONE model per fold (reward.multihead.train_joint_models), as the pipeline does.

    # CPU, one cell (SummEval-OP, natural conflict, seed 0), 1 epoch of multihead MiniLM:
    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python bench/proxy_study.py \
        --datasets summeval_op --conflicts natural --seeds 0 \
        --common "proxy.multihead.epochs=1" --out runs/proxy_study_cpu.json
    # dry run, tiny sizes (4 inputs, 2 folds, short texts):
    .venv/bin/python bench/proxy_study.py --quick
    # GPU: the full study, unchanged code
    python bench/proxy_study.py --seeds 0 1 2 --conflicts natural 0.3 \
        --common "proxy.device=cuda" --variant mh_smol="proxy.backend=multihead \
        proxy.model_path=smollm2 proxy.lora=true"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from auc_study import cell_pairs, fmt, parse_variant  # noqa: E402

from pdselect.config import load_config  # noqa: E402
from pdselect.data import read_source  # noqa: E402
from pdselect.data.rejects import RejectLog  # noqa: E402
from pdselect.data.schema import public_view  # noqa: E402
from pdselect.report.evaluate import roc_auc  # noqa: E402
from pdselect.reward import train_proxy_models, train_unified_model  # noqa: E402
from pdselect.score.table import pd_rati_table, score_table  # noqa: E402

DATASETS = ["summeval_op", "usr_topical_chat", "mqm_ted_zhen", "mqm_ted_ende"]
VARIANTS = ["frozen=proxy.backend=frozen_encoder",
            "mh=proxy.backend=multihead proxy.model_path=minilm"]
MULTIHEAD_ONLY = ("proxy.multihead.", "proxy.model_path=", "proxy.lora=")
#: keys of the frozen heads, refused with the multihead backend (config/checks.py)
FROZEN_ONLY = tuple(f"proxy.{k}=" for k in ("encoder", "head", "features", "l2", "optimizer",
                                            "epochs", "lr", "multitask", "shared_l2",
                                            "standardize", "hidden", "ensemble",
                                            "uncertainty_shrink"))
QUICK = ["proxy.cross_fit=2", "proxy.multihead.epochs=1", "proxy.max_input_tokens=48",
         "proxy.max_response_tokens=48", "aggregate.min_pairs_per_aspect=2"]


def train_both(cfg, public, aspects, seed: int, separate: bool = False):
    """(aspect models, unified model): one joint training per fold for multihead (unless
    ``separate``: the variant's ``+separate`` flag trains the unified model on its own)."""
    if cfg.proxy.backend == "multihead" and not separate:
        from pdselect.reward.multihead import train_joint_models

        return train_joint_models(public, aspects, cfg.proxy, seed, min_pairs=2)
    return (train_proxy_models(public, aspects, cfg.proxy, seed, min_pairs=2),
            train_unified_model(public, cfg.proxy, seed))


def evaluate(cfg, train, aspects, seed: int, separate: bool = False) -> dict:
    public = public_view(train)
    t0 = time.perf_counter()
    models, unified = train_both(cfg, public, aspects, seed, separate)
    gaps, margin = models.gaps(public), unified.gaps(public)[:, 0]
    seconds = time.perf_counter() - t0
    table, _ = score_table(public, gaps, aspects, cfg.score.gamma, margin)
    rati = pd_rati_table(train, aspects, cfg.score.gamma)
    agrees = train["h_agrees_overall"].to_numpy(np.float64)
    known = ~np.isnan(agrees)
    pos = agrees[known] == 1
    acc = {a: models.metrics.get(a, {}).get("val_accuracy") for a in aspects}
    out = {"pd": roc_auc(-table.loc[known, "pd"].to_numpy(), pos),
           "margin": roc_auc(table.loc[known, "margin"].to_numpy(), pos),
           "pd_rati": (roc_auc(-rati.loc[known, "pd_rati"].to_numpy(), pos)
                       if rati is not None else None),
           "acc": acc, "acc_mean": float(np.nanmean([v for v in acc.values() if v is not None])),
           "unified_acc": unified.metrics.get("unified", {}).get("val_accuracy"),
           "val_split": next(iter(models.metrics.values()), {}).get("val_split"),
           "proxy_seconds": round(seconds, 1), "n_pairs": int(len(train)),
           "n_inputs": int(train["input_id"].nunique()),
           "conflict_rate": float(1 - np.nanmean(agrees))}
    out["pd_minus_margin"] = out["pd"] - out["margin"]
    # do the aspect heads rank pairs alike? mean |corr| of the aspects' gaps, and of each
    # aspect's gap with the margin (1.0: PD collapses onto the margin's ranking)
    c = np.corrcoef(np.column_stack([gaps, margin]).T)
    k = len(aspects)
    out["aspect_gap_corr"] = float(np.abs(c[:k, :k][~np.eye(k, dtype=bool)]).mean())
    out["margin_gap_corr"] = float(np.abs(c[:k, k]).mean())
    return out


def applicable(common: list[str], ov: list[str]) -> list[str]:
    """``common`` without the keys the variant's backend would ignore (the config refuses
    them): multihead-only keys for a frozen variant, frozen-only keys for a multihead one."""
    if "proxy.backend=multihead" in common + ov:
        return [o for o in common if not o.startswith(FROZEN_ONLY)]
    return [o for o in common if not o.startswith(MULTIHEAD_ONLY)]


def quick_subset(train, n_inputs: int, seed: int):
    keep = np.random.default_rng(seed).permutation(train["input_id"].unique())[:n_inputs]
    return train[train["input_id"].isin(set(keep))].reset_index(drop=True)


def table(results: list[dict]) -> list[str]:
    lines = ["| dataset | conflict | variant | seeds | proxy acc (oof) | PD AUC | margin AUC | "
             "PD-rati AUC | PD - margin | proxy s |", "|" + "---|" * 10]
    keys = dict.fromkeys((r["dataset"], r["conflict"], r["variant"]) for r in results)
    for ds, c, v in keys:
        rs = [r for r in results if (r["dataset"], r["conflict"], r["variant"]) == (ds, c, v)]
        lines.append(f"| {ds} | {c} | {v} | {len(rs)} | {fmt([r['acc_mean'] for r in rs])} | "
                     f"{fmt([r['pd'] for r in rs])} | {fmt([r['margin'] for r in rs])} | "
                     f"{fmt([r['pd_rati'] for r in rs])} | "
                     f"{fmt([r['pd_minus_margin'] for r in rs])} | "
                     f"{np.mean([r['proxy_seconds'] for r in rs]):.0f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--conflicts", nargs="+", default=["natural", "0.3"],
                    help="'natural' or an aggregate.conflict_level")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variant", action="append", default=[],
                    help="name=override override ... (repeatable; default: frozen and mh); "
                         "+separate: multihead unified model trained on its own")
    ap.add_argument("--common", default="proxy.cross_fit=5",
                    help="overrides applied to every variant (default: 5 folds)")
    ap.add_argument("--quick", action="store_true",
                    help="dry run: 4 inputs per cell, 2 folds, 1 epoch, 48-token texts")
    ap.add_argument("--max-inputs", type=int, default=0,
                    help="train pairs of at most this many inputs per cell (0: all)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.datasets, args.seeds = args.datasets[:1], args.seeds[:1]
        args.conflicts, args.max_inputs = args.conflicts[:1], args.max_inputs or 4
    variants = [parse_variant(v) for v in (args.variant or VARIANTS)]
    common = args.common.split() + (QUICK if args.quick else [])
    results = []
    for ds in args.datasets:
        for c in args.conflicts:
            cl = [] if c == "natural" else [f"aggregate.conflict_level={c}"]
            cfg0 = load_config(None, applicable(common, []) + cl + [f"data.source={ds}"])
            rated = read_source(cfg0.data, RejectLog("ingest"))
            for s in args.seeds:
                train, aspects = cell_pairs(cfg0, rated, s)
                if args.max_inputs:
                    train = quick_subset(train, args.max_inputs, s)
                for name, ov in variants:
                    flags = [o for o in ov if o.startswith("+")]
                    ov = [o for o in ov if not o.startswith("+")]
                    cfg = load_config(None, applicable(common, ov) + cl +
                                      [f"data.source={ds}"] + ov)
                    r = evaluate(cfg, train, aspects, s, separate="+separate" in flags)
                    r.update({"dataset": ds, "conflict": c, "variant": name,
                              "overrides": ov, "seed": s})
                    results.append(r)
                    accs = " ".join(f"{a}={v:.3f}" for a, v in r["acc"].items()
                                    if v is not None)
                    print(f"{ds} conflict={c} seed={s} {name}: PD={r['pd']:.3f} "
                          f"margin={r['margin']:.3f} rati={r['pd_rati'] or float('nan'):.3f} "
                          f"PD-margin={r['pd_minus_margin']:+.3f} acc[{accs}] "
                          f"corr(aspects)={r['aspect_gap_corr']:.2f} "
                          f"corr(aspect,margin)={r['margin_gap_corr']:.2f} "
                          f"t={r['proxy_seconds']}s", flush=True)
                    write(args.out, common, results)  # after every cell: a killed run keeps them
    print("\n" + "\n".join(table(results)))
    write(args.out, common, results)
    return 0


def write(out: str, common: list[str], results: list[dict]) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"argv": sys.argv, "common": common,
                                         "results": results, "table": table(results)},
                                        indent=1, default=float))


if __name__ == "__main__":
    raise SystemExit(main())
