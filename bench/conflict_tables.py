"""Markdown tables of bench/conflict_study.sh's results (docs/RESULTS.md is made from them).

    .venv/bin/python bench/conflict_tables.py runs/conflict_study > /tmp/tables.md

Per dataset x conflict level x variant: conflict-detection AUC of PD and of the margin
(mean ± std over seeds), the PAIRED per-seed difference PD - margin (mean ± standard error,
and how many seeds PD won), PD-rati, and the proxies' mean held-out accuracy.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from pdselect.stats import format_paired, paired_difference

LEVEL_ORDER = {"natural": 0, "0.1": 1, "0.2": 2, "0.3": 3}


def _ms(xs) -> str:
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}"


def paired(pd_, margin) -> str:
    return format_paired(paired_difference(pd_, margin))


def load(folder: Path) -> dict:
    cells = defaultdict(list)  # (dataset, level, variant) -> results
    for f in sorted(folder.glob("*.json")):
        ds, _, level = f.stem.rpartition("_")
        for r in json.loads(f.read_text())["results"]:
            cells[(r["dataset"], level, r["variant"])].append(r)
    return cells


def table(cells: dict) -> str:
    lines = ["| dataset | conflict | variant | PD AUC | margin AUC | PD - margin (paired, SE, "
             "seeds won) | PD-rati | proxy held-out acc | seeds |", "|" + "---|" * 9]
    keys = sorted(cells, key=lambda k: (k[0], LEVEL_ORDER.get(k[1], 9), k[2]))
    for ds, level, var in keys:
        rs = sorted(cells[(ds, level, var)], key=lambda r: r["seed"])
        pd_, m = [r["pd"] for r in rs], [r["margin"] for r in rs]
        lines.append(f"| {ds} | {level} | {var} | {_ms(pd_)} | {_ms(m)} | {paired(pd_, m)} | "
                     f"{_ms([r['pd_rati'] for r in rs])} | {_ms([r['val_acc'] for r in rs])} | "
                     f"{len(rs)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(table(load(Path(argv[0] if argv else "runs/conflict_study"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
