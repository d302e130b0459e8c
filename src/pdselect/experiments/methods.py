"""What each method of the experiment grid trains on (METHOD.md 4), for one cell.

    sub, dfpo_offset, mask = method_pairs("PD", 0.3, cell)

Subset methods pick pairs of the pool with a selector; full-data methods relabel or keep all
of it. Shared by the probe level (experiments/grid.py) and the DPO level (experiments/dpo_level.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..data.schema import delta_col
from ..select.selectors import make_selector

# subset method -> (selector, score column it ranks, sign that makes the column a keep-score)
SUBSET_METHODS = {"PD": ("pd", "pd", -1.0), "PD-high": ("pd_high", "pd", 1.0),
                  "PD-nl": ("pd", "pd_nl", -1.0), "PD-rati": ("pd_rati", "pd_rati", -1.0),
                  "RAF": ("margin", "margin", 1.0), "RAND": ("random", None, 0.0)}
FULL_METHODS = ["ALL", "OVA", "AVG", "DFPO"]


def _relabel(train: pd.DataFrame, delta: np.ndarray) -> pd.DataFrame:
    """Orient every pair by the sign of ``delta`` (chosen = preferred); drop ties."""
    ok = ~np.isnan(delta) & (delta != 0)
    t = train[ok].copy()
    flip = delta[ok] < 0
    c, r = t["chosen"].to_numpy(copy=True), t["rejected"].to_numpy(copy=True)
    t["chosen"], t["rejected"] = np.where(flip, r, c), np.where(flip, c, r)
    return t


def _avg_delta(train: pd.DataFrame, aspects: list[str], scales: dict) -> np.ndarray:
    cols = [train[delta_col(a)].to_numpy(np.float64) / (scales[a][1] - scales[a][0])
            for a in aspects]
    with np.errstate(all="ignore"):
        return np.nanmean(np.stack(cols, 1), axis=1)


@dataclasses.dataclass
class Cell:
    """One (dataset, conflict level, seed): its pairs, the score table and what methods need."""

    train: pd.DataFrame   # train pairs WITH hidden columns (oracle methods and metrics only)
    test: pd.DataFrame
    table: pd.DataFrame   # score table aligned with train rows
    aspects: list[str]
    scales: dict
    seed: int


def method_pairs(name: str, budget: float, cell: Cell):
    """(training pairs, DFPO offset or None, selection mask or None) of a method."""
    train, table = cell.train, cell.table
    if name in SUBSET_METHODS:
        sel_name, col, _ = SUBSET_METHODS[name]
        t = table.assign(pd=table["pd_nl"]) if col == "pd_nl" else table  # PD-nl: own column
        mask = make_selector(sel_name, budget=budget, random_state=cell.seed).fit(t).get_support()
        return train[mask], None, mask
    if name == "ALL":
        return train, None, None
    if name == "OVA":
        return _relabel(train, train["h_overall_delta"].to_numpy(np.float64)), None, None
    if name == "AVG":
        return _relabel(train, _avg_delta(train, cell.aspects, cell.scales)), None, None
    if name == "DFPO":  # all pairs, loss -log sigmoid(K dr + PD)
        return train, table["pd"].to_numpy(), None
    raise ValueError(f"unknown method {name!r}")
