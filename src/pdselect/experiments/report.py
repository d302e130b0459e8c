"""Tables (Markdown + JSON, mean ± std over seeds) and plots for the experiment grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..report.plots import method_order

METRICS_ORDER = ["auc", "conflict_rate"]


# suffixes of the length-controlled companions of a held-out accuracy (probe.length_columns)
LENGTH_SUFFIXES = ("_acc_longer", "_acc_shorter", "_balanced", "_lenadj")
FULL_LABELS = ("ALL", "OVA", "AVG", "DFPO", "LONGER")  # rows not at a budget


def metric_columns(df: pd.DataFrame, main: bool = False) -> list[str]:
    """Every metric column (``main``: without the length-controlled companions)."""
    probes = sorted(c for c in df.columns if c.startswith("probe_"))
    dpo = sorted(c for c in df.columns if c.startswith("dpo_"))
    cols = [c for c in METRICS_ORDER if c in df.columns] + probes + dpo
    return [c for c in cols if not (main and c.endswith(LENGTH_SUFFIXES))]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """mean, std and n over seeds for every (dataset, conflict, method, budget)."""
    keys = ["dataset", "conflict", "method", "budget"]
    if df.empty:  # every cell skipped: an empty summary, the reasons are in results.md
        return pd.DataFrame(columns=keys + ["n_seeds"])
    df = df.assign(conflict=df["conflict"].astype(str))
    metrics = metric_columns(df)
    g = df.groupby(keys, sort=False)[metrics]
    out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std"))
    out["n_seeds"] = g.size()
    return out.reset_index()


def _pm(mean: float, std: float) -> str:
    if mean is None or np.isnan(mean):
        return "n/a"
    if std is None or np.isnan(std):  # a single seed has no spread to report
        return f"{mean:.3f} (1 seed)"
    return f"{mean:.3f} ± {std:.3f}"


def conflict_table(s: pd.DataFrame, dataset: str, metric: str, budget: float) -> list[str]:
    """Rows = methods (subset methods at ``budget``, full-data ones at 1.0), cols = levels."""
    d = s[(s["dataset"] == dataset) & ((s["budget"] == budget) | (s["budget"] == 1.0))]
    levels = list(dict.fromkeys(d["conflict"]))
    lines = ["| method | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
    for m in method_order(d["method"].unique()):
        cells = []
        for lv in levels:
            r = d[(d["method"] == m) & (d["conflict"] == lv)]
            cells.append(_pm(r[f"{metric}_mean"].iloc[0], r[f"{metric}_std"].iloc[0])
                         if len(r) and f"{metric}_mean" in r else "n/a")
        label = m if m in FULL_LABELS else f"{m}@{budget:.0%}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def render(s: pd.DataFrame, cfg, info: dict, command: str) -> str:
    ex = cfg.experiment
    L = ["# Experiment grid results", "",
         f"Command: `{command}`", "",
         f"Seeds {ex.seeds}; conflict levels {['natural' if c is None else c for c in ex.conflict_levels]}; "
         f"budgets {ex.budgets}; wall time {info['wall_seconds']} s (cells resumed from "
         "`cells/` count only their loading time).", ""]
    for sk in info.get("skipped_cells", []):
        L += [f"- Skipped cell {sk['dataset']} conflict={sk['conflict']} seed={sk['seed']}: "
              f"{sk['reason']}"]
    if info.get("skipped_cells"):
        L += [""]
    main_budget = 0.3 if 0.3 in ex.budgets else ex.budgets[0]
    for ds in s["dataset"].unique():
        L += [f"## {ds}", ""]
        for metric in metric_columns(s.rename(columns=lambda c: c.replace("_mean", "")), True):
            if f"{metric}_mean" not in s.columns:
                continue
            title = {"auc": "Conflict-detection AUC (train pool)",
                     "conflict_rate": "Conflict rate of the training pairs"}.get(
                metric, f"{metric} (held-out, overall labels)")
            L += [f"### {title}", ""] + conflict_table(s, ds, metric, main_budget)
        L += length_section(s, ds, main_budget)
    return "\n".join(L)


def _prefix(metric: str) -> str:
    """The prefix of a held-out metric's length-controlled columns (dpo_implicit_acc: dpo)."""
    return "dpo" if metric.startswith("dpo_") else metric


def length_section(s: pd.DataFrame, dataset: str, budget: float) -> list[str]:
    """Per held-out metric and conflict level: plain accuracy next to its length-controlled
    companions (mean over seeds), LONGER = the rule 'the longer response wins'."""
    L = []
    d = s[(s["dataset"] == dataset) & ((s["budget"] == budget) | (s["budget"] == 1.0))]
    held_out = [c[:-5] for c in d.columns if c.endswith("_mean") and (
        c == "dpo_implicit_acc_mean" or c.startswith("probe_l2=")) and not
        c[:-5].endswith(LENGTH_SUFFIXES)]
    for metric in [m for m in sorted(held_out) if f"{_prefix(m)}_balanced_mean" in d.columns]:
        pre = _prefix(metric)
        for lv in dict.fromkeys(d["conflict"]):
            sub = d[(d["conflict"] == lv) & d[f"{metric}_mean"].notna()]
            if sub.empty:
                continue
            L += [f"### {metric}, length-controlled (conflict {lv})", "",
                  "Accuracy where the overall-preferred response is the longer / the shorter "
                  "one, their mean (0.5 for LONGER by construction) and the accuracy a logistic "
                  "fit of correctness on the length difference predicts at equal lengths.", "",
                  "| method | accuracy | preferred longer | preferred shorter | mean of strata "
                  "| length-adjusted |", "|---|---|---|---|---|---|"]
            for m in method_order(sub["method"].unique()):
                r = sub[sub["method"] == m].iloc[0]
                cells = [r.get(f"{metric}_mean", np.nan)] + [
                    r.get(f"{pre}{k}_mean", np.nan) for k in LENGTH_SUFFIXES]
                label = m if m in FULL_LABELS else f"{m}@{budget:.0%}"
                L.append(f"| {label} | " + " | ".join("n/a" if pd.isna(c) else f"{c:.3f}"
                                                      for c in cells) + " |")
            L.append("")
    return L


def write_outputs(out: Path, rows: list[dict], summary: pd.DataFrame, cfg, info: dict,
                  command: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary.to_json(orient="records", indent=1))
    (out / "results.md").write_text(render(summary, cfg, info, command or info.get("command", "")))
    try:
        from ..report.plots import plot_all

        plot_all(pd.DataFrame(rows), summary, out)
    except ImportError:  # matplotlib is optional
        pass
    (out / "info.json").write_text(json.dumps(info, indent=1))
