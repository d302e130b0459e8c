"""The probe-level targets of issue 11 from an experiment grid's results.json (per-seed rows).

    .venv/bin/python bench/probe_targets.py runs/experiment_cpu_now/results.json [--probe probe_l2=0.0001]

Per dataset x conflict level, PAIRED over seeds (each seed is one aggregated pool and split):
  PD@30% - ALL@100%               mean ± standard error
  PD@30% - RAND@30%               mean, and in units of its standard error
  share of PD-rati's gain         (PD - RAND) / (PD-rati - RAND), from the seed means
Targets: PD >= ALL at every level >= 10%; PD > RAND by >= 2 SE; share >= 0.9.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from pdselect.stats import mean_se


def paired(rows, probe: str, a: tuple, b: tuple) -> np.ndarray:
    by = defaultdict(dict)
    for r in rows:
        by[r["seed"]][(r["method"], r["budget"])] = r[probe]
    return np.array([v[a] - v[b] for v in by.values() if a in v and b in v])


def se(d: np.ndarray) -> float:
    """Standard error of the mean over seeds (pdselect.stats, scipy)."""
    return mean_se(d)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--probe", default="probe_l2=0.0001")
    ap.add_argument("--budget", type=float, default=0.3)
    args = ap.parse_args(argv)
    rows = json.load(open(args.results))
    cells = defaultdict(list)
    for r in rows:
        cells[(r["dataset"], str(r["conflict"]))].append(r)
    b = args.budget
    print(f"{args.probe}, budget {b:.0%}, paired over seeds\n")
    print(f"| dataset | conflict | PD@{b:.0%} - ALL | PD - RAND (SE units) | share of PD-rati gain "
          "| seeds |")
    print("|---|---|---|---|---|---|")
    for (ds, lv), rs in sorted(cells.items()):
        d_all = paired(rs, args.probe, ("PD", b), ("ALL", 1.0))
        d_rand = paired(rs, args.probe, ("PD", b), ("RAND", b))
        d_rati = paired(rs, args.probe, ("PD-rati", b), ("RAND", b))
        if not len(d_all):
            continue
        share = d_rand.mean() / d_rati.mean() if len(d_rati) and d_rati.mean() != 0 else float("nan")
        z = d_rand.mean() / se(d_rand) if se(d_rand) > 0 else float("nan")
        print(f"| {ds} | {lv} | {d_all.mean():+.3f} ± {se(d_all):.3f} | {d_rand.mean():+.3f} "
              f"({z:+.1f}) | {share:.2f} | {len(d_all)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
