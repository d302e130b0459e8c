"""Conflict-detection AUC study: PD (proxy models) vs margin (unified RM, RAF-like) vs PD-rati.

Same protocol as ``pdselect.experiments.grid.score_cell`` / the pipeline, in-process:
read_source -> aggregate (seeded; natural conflict unless --conflict) -> train pairs ->
public_view -> train_proxy_models + train_unified_model -> score_table -> roc_auc of -PD (and
of +margin, of -PD-rati) for "pair agrees with the hidden overall preference".

Config variants are dotted overrides (the same strings ``pdselect run ... key=value`` takes), so
any row of the table is reproducible with the CLI:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/auc_study.py \
        --variant base= --variant l2=proxy.l2=1e-2 --variant mlp="proxy.head=mlp proxy.l2=1e-3" \
        --out /tmp/auc.json

A variant is ``name=override override ...`` (empty: the current defaults). Results: one line per
(dataset, variant, seed), a mean +- std table, and a JSON with every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from pdselect.aggregate.pairs import aggregate
from pdselect.config import load_config
from pdselect.data import read_source
from pdselect.report.evaluate import roc_auc
from pdselect.data.rejects import RejectLog
from pdselect.reward import train_proxy_models, train_unified_model
from pdselect.data.schema import public_view
from pdselect.score.table import pd_rati_table, pd_weights, score_table

DATASETS = ["usr_topical_chat", "usr_persona_chat", "summeval_op"]


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, _, rest = spec.partition("=")
    return name.strip(), rest.split()


def cell_pairs(cfg, rated, seed: int):
    pairs = aggregate(rated, cfg.aggregate, seed, RejectLog("aggregate"))
    train = pairs[pairs["split"] == "train"].reset_index(drop=True)
    aspects = [a for a in rated.aspects if (train["aspect"] == a).any()]
    return train, aspects


def evaluate_cell(cfg, train, aspects, seed: int, margin: bool = True) -> dict:
    public = public_view(train)
    t0 = time.perf_counter()
    models = train_proxy_models(public, aspects, cfg.proxy, seed)
    gaps = models.gaps(public)
    t_proxy = time.perf_counter() - t0
    m = None
    if margin:
        unified = train_unified_model(public, cfg.proxy, seed)
        m = unified.gaps(public)[:, 0]
    table, _ = score_table(public, gaps, aspects, cfg.score.gamma, m,
                           pd_weights(cfg.score, aspects, models.metrics))
    rati = pd_rati_table(train, aspects, cfg.score.gamma)
    agrees = train["h_agrees_overall"].to_numpy(np.float64)
    known = ~np.isnan(agrees)
    pos = agrees[known] == 1
    out = {"pd": roc_auc(-table.loc[known, "pd"].to_numpy(), pos),
           "margin": roc_auc(table.loc[known, "margin"].to_numpy(), pos) if margin else None,
           "pd_rati": roc_auc(-rati.loc[known, "pd_rati"].to_numpy(), pos)
           if rati is not None else None,
           "val_acc": float(np.nanmean([v.get("val_accuracy", np.nan)
                                        for v in models.metrics.values()])),
           "proxy_seconds": round(t_proxy, 2), "n_pairs": int(len(train)),
           "conflict_rate": float(1 - np.nanmean(agrees))}
    return out


def fmt(xs) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "  -  "
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--variant", action="append", default=[],
                    help="name=override override ... (repeatable; default: base=)")
    ap.add_argument("--common", default="", help="overrides applied to every variant")
    ap.add_argument("--conflict", type=float, default=None, help="aggregate.conflict_level")
    ap.add_argument("--no-margin", action="store_true", help="skip the unified model")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    variants = [parse_variant(v) for v in (args.variant or ["base="])]
    common = args.common.split()
    if args.conflict is not None:
        common.append(f"aggregate.conflict_level={args.conflict}")
    results = []
    for ds in args.datasets:
        cfg0 = load_config(None, common + [f"data.source={ds}"])
        rated = read_source(cfg0.data, RejectLog("ingest"))
        cells = {s: cell_pairs(cfg0, rated, s) for s in args.seeds}
        for name, ov in variants:
            cfg = load_config(None, common + [f"data.source={ds}"] + ov)
            if dataclasses.asdict(cfg.aggregate) != dataclasses.asdict(cfg0.aggregate):
                cells_v = {s: cell_pairs(cfg, rated, s) for s in args.seeds}
            else:
                cells_v = cells
            for s in args.seeds:
                train, aspects = cells_v[s]
                r = evaluate_cell(cfg, train, aspects, s, margin=not args.no_margin)
                r.update({"dataset": ds, "variant": name, "overrides": ov, "seed": s})
                results.append(r)
                print(f"{ds:18s} {name:14s} seed={s} PD={r['pd']:.3f} "
                      f"margin={r['margin'] if r['margin'] is None else round(r['margin'], 3)} "
                      f"rati={r['pd_rati']:.3f} val={r['val_acc']:.3f} "
                      f"t={r['proxy_seconds']}s", flush=True)
    print("\n| dataset | variant | PD | margin | PD-rati | PD - margin | proxy val acc |")
    print("|---|---|---|---|---|---|---|")
    summary = []
    for ds in args.datasets:
        for name, ov in variants:
            rs = [r for r in results if r["dataset"] == ds and r["variant"] == name]
            diff = ([r["pd"] - r["margin"] for r in rs] if not args.no_margin else [None])
            row = {"dataset": ds, "variant": name, "overrides": " ".join(ov),
                   "pd_mean": float(np.mean([r["pd"] for r in rs])),
                   "pd_std": float(np.std([r["pd"] for r in rs])),
                   "margin_mean": (float(np.mean([r["margin"] for r in rs]))
                                   if not args.no_margin else None),
                   "margin_std": (float(np.std([r["margin"] for r in rs]))
                                  if not args.no_margin else None),
                   "pd_rati_mean": float(np.mean([r["pd_rati"] for r in rs]))}
            summary.append(row)
            print(f"| {ds} | {name} | {fmt([r['pd'] for r in rs])} | "
                  f"{fmt([r['margin'] for r in rs])} | {fmt([r['pd_rati'] for r in rs])} | "
                  f"{fmt(diff)} | {fmt([r['val_acc'] for r in rs])} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"argv": sys.argv, "common": common,
                                              "results": results, "summary": summary},
                                             indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
