"""The paper's experiment grid (METHOD.md 4), measured on the bundled real data.

methods x conflict levels x budgets x seeds, per dataset. One *cell* = (dataset, conflict level,
seed): aggregate, train the proxy models once, score, then evaluate every method in it:

    subset methods (at each budget)  PD, PD-high, PD-nl (no length handling), PD-rati (oracle),
                                     RAF (unified-RM margin), RAND
    full-data methods                ALL (own aspect labels), OVA (overall labels, oracle),
                                     AVG (mean-of-aspects labels, oracle), DFPO (PD-offset loss)

Levels measured (all on HELD-OUT inputs labelled by the overall preference, except the first):
    selection   conflict-detection AUC and conflict rate of the kept pairs (train pool)
    probe       accuracy of a fresh BT head trained on the method's pairs, per L2 strength
    dpo         (opt-in, see experiment.dpo_*) implicit-reward accuracy of a DPO-trained policy

Both held-out levels are also length-controlled (issue 19: "the longer response wins" alone
scores 0.66-0.84 on the bundled sets): accuracy where the overall-preferred response is the
longer / the shorter one (``_acc_longer`` / ``_acc_shorter``), their mean (``_balanced``), the
accuracy a logistic fit of correctness on the length difference predicts at equal lengths
(``_lenadj``), and the length rule itself as the baseline row ``LONGER``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..aggregate.pairs import aggregate
from ..config import RunConfig
from ..data import read_source
from ..report.evaluate import conflict_rate, roc_auc
from ..pd import pd_from_gaps
from .probe import (LENGTH_RULE, length_columns, length_rule_correct, preferred_length_gap,
                    probe_many)
from ..data.rejects import RejectLog
from ..reward import UNIFIED, train_proxy_models
from ..reward.frozen import features, make_store
from ..data.schema import delta_col, public_view
from ..score.table import label_index, pd_rati_table, pd_weights, score_table
from .methods import FULL_METHODS, SUBSET_METHODS, Cell, method_pairs

log = logging.getLogger(__name__)

def score_cell(cfg: RunConfig, train: pd.DataFrame, aspects: list[str], seed: int) -> pd.DataFrame:
    """PD, PD-nl, margin and PD-rati for every train pair (the selection pool)."""
    public = public_view(train)
    gamma = cfg.score.gamma
    floor = cfg.aggregate.min_pairs_per_aspect  # the one floor (as in the pipeline)
    models = train_proxy_models(public, aspects, cfg.proxy, seed, min_pairs=floor)
    unified = train_proxy_models(public.assign(aspect=UNIFIED), [UNIFIED], cfg.proxy, seed,
                                 min_pairs=floor, diagnostics=False)
    table, _ = score_table(public, models.gaps(public), aspects, gamma,
                           unified.gaps(public)[:, 0],
                           pd_weights(cfg.score, aspects, models.metrics))
    nl_cfg = dataclasses.replace(cfg.proxy, rho=0.0, tau=None)
    nl = train_proxy_models(public, aspects, nl_cfg, seed, min_pairs=floor, diagnostics=False)
    table["pd_nl"] = pd_from_gaps(nl.gaps(public), label_index(public["aspect"], aspects),
                                  gamma)[0]
    rati = pd_rati_table(train, aspects, gamma)
    if rati is not None:
        table["pd_rati"] = rati["pd_rati"].to_numpy()
    table.attrs["proxy_val_acc"] = {a: m.get("val_accuracy") for a, m in models.metrics.items()}
    return table


def aspect_conflict_matrix(pairs: pd.DataFrame, aspects: list[str]) -> pd.DataFrame:
    """[k, k'] = share of pairs labelled k that aspect k' (true ratings) rates the other way."""
    m = pd.DataFrame(np.nan, index=aspects, columns=aspects)
    for k in aspects:
        sub = pairs[pairs["aspect"] == k]
        for k2 in aspects:
            if k2 != k and delta_col(k2) in sub and len(sub):
                m.loc[k, k2] = float((sub[delta_col(k2)] < 0).mean())
    return m


def make_cell(cfg: RunConfig, rated, level: float | None, seed: int) -> Cell:
    agg_cfg = dataclasses.replace(cfg.aggregate, conflict_level=level)
    pairs = aggregate(rated, agg_cfg, seed, RejectLog("aggregate"))
    train = pairs[pairs["split"] == "train"].reset_index(drop=True)
    test = pairs[pairs["split"] == "test"].reset_index(drop=True)
    aspects = [a for a in rated.aspects if (train["aspect"] == a).any()]
    return Cell(train, test, score_cell(cfg, train, aspects, seed), aspects, rated.scales, seed)


def run_cell(cfg: RunConfig, cell: Cell, base: dict, features_fn) -> list[dict]:
    """Selection-level and probe metrics of every method x budget in one cell."""
    ex, table, train = cfg.experiment, cell.table, cell.train
    agrees = train["h_agrees_overall"].to_numpy(np.float64)
    known = ~np.isnan(agrees)
    rows, subsets, offsets = [], {}, {}
    for name in ex.methods:
        if name in SUBSET_METHODS:
            _, col, sign = SUBSET_METHODS[name]
            if col is not None and col not in table.columns:
                continue  # e.g. PD-rati on data without every aspect rated
            auc = (roc_auc(sign * table.loc[known, col].to_numpy(), agrees[known] == 1)
                   if col else 0.5)
            for b in ex.budgets:
                sub, _, mask = method_pairs(name, b, cell)
                rows.append({**base, "method": name, "budget": b, "n": len(sub), "auc": auc,
                             "conflict_rate": conflict_rate(agrees, mask)})
                subsets[(name, b)] = sub
        elif name in FULL_METHODS:
            sub, off, _ = method_pairs(name, 1.0, cell)
            sub_agrees = (sub["h_agrees_overall"].to_numpy(np.float64) if name in ("ALL", "DFPO")
                          else np.ones(len(sub)))  # OVA/AVG labels agree by construction
            rows.append({**base, "method": name, "budget": 1.0, "n": len(sub),
                         "auc": float("nan"), "conflict_rate": conflict_rate(sub_agrees)})
            subsets[(name, 1.0)] = sub
            if off is not None:
                offsets[(name, 1.0)] = off
    # the probe only ever sees public columns of the training subsets
    correct = probe_many(features_fn, public_view(train),
                         {k: public_view(v) for k, v in subsets.items()}, cell.test,
                         ex.probe_l2, cell.seed, offsets=offsets, K=len(cell.aspects),
                         detail=True)
    gap = preferred_length_gap(cell.test, cell.test["h_overall_delta"])
    val = [v for v in table.attrs["proxy_val_acc"].values() if v is not None]
    rows.append({**base, "method": LENGTH_RULE, "budget": 1.0, "n": 0, "auc": float("nan"),
                 "conflict_rate": float("nan")})
    rule = length_rule_correct(gap)
    for r in rows:
        per_l2 = ({l2: rule for l2 in ex.probe_l2} if r["method"] == LENGTH_RULE
                  else correct[(r["method"], r["budget"])])
        for l2, c in per_l2.items():
            name = f"probe_l2={l2:g}"
            r[name] = float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")
            r.update(length_columns(name, c, gap))
        r["proxy_val_acc"] = float(np.nanmean(val)) if val else float("nan")
    return rows


def merge_rows(rows: list[dict], extra: list[dict]) -> None:
    """Add the DPO metrics to the matching (method, budget) rows; unmatched ones are appended."""
    index = {(r["method"], r["budget"]): r for r in rows}
    for e in extra:
        key = (e["method"], e["budget"])
        if key in index:
            index[key].update({k: v for k, v in e.items() if k.startswith("dpo_")})
        else:
            rows.append(e)


def _cell_file(out: Path, ds: str, level, seed: int) -> Path:
    return out / "cells" / f"{ds}_{'natural' if level is None else level}_seed{seed}.json"


def _run_one(cfg: RunConfig, rated, ds: str, level, seed: int, out: Path,
             features_fn) -> dict:
    """One cell's rows (or the reason it was skipped), with its plots for the first cell."""
    from ..errors import StageError
    from ..report.plots import aspect_conflict_matrix as plot_matrix, pd_histogram

    ex = cfg.experiment
    try:
        cell = make_cell(cfg, rated, level, seed)
    except StageError as e:  # e.g. subsampling left an aspect too few pairs to train on
        log.warning("experiment %s conflict=%s seed=%d skipped: %s", ds, level, seed, e)
        return {"rows": [], "skipped": str(e)}
    base = {"dataset": ds, "conflict": "natural" if level is None else level, "seed": seed,
            "pool": len(cell.train),
            "pool_conflict_rate": conflict_rate(cell.train["h_agrees_overall"])}
    rows = run_cell(cfg, cell, base, features_fn)
    if ds in ex.dpo_datasets and level in ex.dpo_conflict_levels and seed in ex.dpo_seeds:
        from .dpo_level import dpo_metrics

        merge_rows(rows, dpo_metrics(cfg, cell, base, out / "dpo"))
    if seed == ex.seeds[0] and level == ex.conflict_levels[0]:
        agrees = cell.train["h_agrees_overall"].to_numpy(np.float64)
        pd_histogram(cell.table["pd"].to_numpy(), agrees, out,
                     f"PD on {ds} (natural conflict, seed {seed})", f"pd_histogram_{ds}.png")
        plot_matrix(aspect_conflict_matrix(cell.train, cell.aspects), out,
                    f"{ds}: label k vs aspect k'", f"aspect_conflict_matrix_{ds}.png")
    return {"rows": rows, "skipped": None}


def run_experiment(cfg: RunConfig, out_dir: str | Path, command: str = "") -> dict:
    """Run the whole grid; write results.json, summary.json, results.md and plots.

    Every finished cell is saved under ``cells/`` (atomically), so a killed or failed grid
    resumes where it stopped; a cell the data cannot support (an aspect left with too few
    pairs) is recorded as skipped, with the reason, not silently dropped.
    """
    from ..run.artifacts import read_json, write_json
    from .report import summarise, write_outputs

    ex = cfg.experiment
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = make_store(cfg.proxy)

    def features_fn(inputs, responses):
        return features(store, cfg.proxy.features, inputs, responses)

    rows, skipped, t0 = [], [], time.perf_counter()
    for ds in ex.datasets:
        rated = read_source(dataclasses.replace(cfg.data, source=ds, path=""),
                            RejectLog("ingest"))
        for level in ex.conflict_levels:
            for seed in ex.seeds:
                tc, f = time.perf_counter(), _cell_file(out, ds, level, seed)
                if f.exists():
                    res = read_json(f)
                else:
                    res = _run_one(cfg, rated, ds, level, seed, out, features_fn)
                    write_json(f, res)
                rows += res["rows"]
                if res["skipped"]:
                    skipped.append({"dataset": ds, "conflict": level, "seed": seed,
                                    "reason": res["skipped"]})
                log.info("experiment %s conflict=%s seed=%d: %.1fs", ds, level, seed,
                         time.perf_counter() - tc)
    summary = summarise(pd.DataFrame(rows))
    info = {"wall_seconds": round(time.perf_counter() - t0, 1), "n_rows": len(rows),
            "command": command, "skipped_cells": skipped}
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=float))
    write_outputs(out, rows, summary, cfg, info)
    return info
