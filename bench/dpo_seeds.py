"""The DPO level over several `pdselect experiment` runs (one per seed): one table, with errors.

    python bench/dpo_seeds.py runs/experiment_dpo_cpu_s0 runs/experiment_dpo_cpu_s1 \\
        runs/experiment_dpo_cpu_seed2 --eval-pairs 160

For each method: the kept pairs and their conflict rate, the held-out DPO implicit-reward
accuracy per seed, its mean, the standard error over seeds, the binomial standard error of ONE
accuracy on ``--eval-pairs`` held-out pairs (the noise floor of a single run), and the paired
per-seed differences to ALL@100% and RAND@30% (mean ± SE over seeds; seeds won).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ORDER = ["ALL", "PD", "RAND", "RAF", "PD-high"]


def load(runs: list[str]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for r in json.loads((Path(run) / "results.json").read_text()):
            if r.get("dpo_implicit_acc") is not None:
                rows.append({k: r[k] for k in ("dataset", "conflict", "seed", "method", "n",
                                               "conflict_rate", "dpo_implicit_acc")})
    return pd.DataFrame(rows)


def se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def paired(acc: pd.DataFrame, method: str, other: str) -> str:
    if method == other or other not in acc or method not in acc:
        return ""
    d = (acc[method] - acc[other]).dropna().to_numpy()
    return f"{d.mean():+.3f} ± {se(d):.3f} ({int((d > 0).sum())}/{len(d)})"


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
        name = m if m == "ALL" else f"{m}@30%"
        lines.append(
            f"| {name} | {' / '.join(str(int(n)) for n in g['n'])} | "
            f"{' / '.join(f'{c:.2f}' for c in g['conflict_rate'])} | "
            + " | ".join(f"{acc.loc[s, m]:.3f}" for s in seeds)
            + f" | **{p:.3f}** ± {se(a):.3f} | {np.sqrt(p * (1 - p) / eval_pairs):.3f} | "
            f"{paired(acc, m, 'ALL')} | {paired(acc, m, 'RAND')} |")
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


if __name__ == "__main__":
    main()
