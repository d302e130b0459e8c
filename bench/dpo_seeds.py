"""The DPO level over several `pdselect experiment` runs (one per seed): one table, with errors.

    python bench/dpo_seeds.py runs/experiment_dpo_cpu_s0 runs/experiment_dpo_cpu_s1 \\
        runs/experiment_dpo_cpu_seed2 --eval-pairs 160

For each method: the kept pairs and their conflict rate, the held-out DPO implicit-reward
accuracy per seed, its mean, the standard error over seeds, the binomial standard error of ONE
accuracy on ``--eval-pairs`` held-out pairs (the noise floor of a single run), and the paired
per-seed differences to ALL@100% and RAND@30% (mean ± SE over seeds; seeds won). A second table
per (dataset, conflict) controls for length (results written by pdselect >= the issue-19 metrics):
the accuracy where the overall-preferred response is the longer / the shorter one, their mean,
and the logistic length-adjusted accuracy (mean over seeds), with LONGER = "the longer response
wins". Statistics: pdselect.stats (scipy).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pdselect.stats import binomial_se, format_paired, mean_se, paired_difference

ORDER = ["ALL", "PD", "RAND", "RAF", "PD-high", "IRG", "LONGER"]
LENGTH = {"dpo_acc_longer": "preferred longer", "dpo_acc_shorter": "preferred shorter",
          "dpo_balanced": "mean of strata", "dpo_lenadj": "length-adjusted"}


def load(runs: list[str]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for r in json.loads((Path(run) / "results.json").read_text()):
            if r.get("dpo_implicit_acc") is not None:
                rows.append({k: r.get(k) for k in ("dataset", "conflict", "seed", "method", "n",
                                                   "conflict_rate", "dpo_implicit_acc",
                                                   *LENGTH)})
    return pd.DataFrame(rows)


def se(x: np.ndarray) -> float:
    return mean_se(x)[1]


def paired(acc: pd.DataFrame, method: str, other: str) -> str:
    if method == other or other not in acc or method not in acc:
        return ""
    return format_paired(paired_difference(acc[method], acc[other]))


def table(df: pd.DataFrame, eval_pairs: int) -> str:
    acc = df.pivot_table(index="seed", columns="method", values="dpo_implicit_acc")
    seeds = list(acc.index)
    head = ("| method | train pairs | conflict rate | " + " | ".join(f"seed {s}" for s in seeds)
            + " | mean ± SE (seeds) | binomial SE of one run | vs ALL (paired) | vs RAND (paired) |")
    lines = [head, "|" + "---|" * (len(seeds) + 7)]
    for m in [m for m in ORDER if m in acc] + [m for m in acc if m not in ORDER]:
        g = df[df["method"] == m].sort_values("seed")
        a = acc[m].dropna().to_numpy()
        p = a.mean()
        name = m if m in ("ALL", "LONGER") else f"{m}@30%"
        lines.append(
            f"| {name} | {' / '.join(str(int(n)) for n in g['n'])} | "
            f"{' / '.join(_two(c) for c in g['conflict_rate'])} | "
            + " | ".join(f"{acc.loc[s, m]:.3f}" for s in seeds)
            + f" | **{p:.3f}** ± {se(a):.3f} | {binomial_se(p, eval_pairs):.3f} | "
            f"{paired(acc, m, 'ALL')} | {paired(acc, m, 'RAND')} |")
    return "\n".join(lines)


def _two(c) -> str:
    return "n/a" if c is None or pd.isna(c) else f"{c:.2f}"


def length_table(df: pd.DataFrame) -> str:
    """Plain accuracy next to the length-controlled numbers, mean ± SE over seeds."""
    cols = [c for c in LENGTH if c in df.columns and df[c].notna().any()]
    if not cols:
        return "(no length-controlled columns: results written before the issue-19 metrics)"
    lines = ["| method | accuracy | " + " | ".join(LENGTH[c] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    methods = list(df["method"].unique())
    for m in [m for m in ORDER if m in methods] + [m for m in methods if m not in ORDER]:
        g = df[df["method"] == m]
        cells = []
        for c in ["dpo_implicit_acc", *cols]:
            mean, s_e = mean_se(g[c].to_numpy(np.float64))
            cells.append("n/a" if np.isnan(mean) else f"{mean:.3f}" + (
                "" if np.isnan(s_e) else f" ± {s_e:.3f}"))
        lines.append(f"| {m if m in ('ALL', 'LONGER') else f'{m}@30%'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="experiment output folders (results.json each)")
    ap.add_argument("--eval-pairs", type=int, default=160)
    a = ap.parse_args()
    df = load(a.runs)
    for (ds, c), g in df.groupby(["dataset", "conflict"]):
        print(f"{ds}, conflict {c}:\n")
        print(table(g, a.eval_pairs))
        print(f"\n{ds}, conflict {c}, length-controlled (mean ± SE over seeds):\n")
        print(length_table(g))


if __name__ == "__main__":
    main()
