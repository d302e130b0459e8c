"""The budget and its boundary: how many rows a budget keeps, how it splits across groups, and
which rows make the cut, without a global sort.

    n = budget_size(len(scores), budget=0.3)
    keep = threshold_support(scores["pd"], scores["pair_id"], n)     # boolean mask

The rank order is key ascending (negated for descending selectors), NaN last, ties by
``str(pair_id)``. Cost: ``np.partition`` on the key column (O(N)) plus a sort of only the rows
TIED with the boundary value. Every selector (select/selectors.py) and the streamed selection
over score parts (select/threshold.py) take their support from these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError


def budget_size(n: int, budget: float = 0.3, budget_count: int | None = None) -> int:
    """Number of pairs to keep: ``budget_count`` if given, else ceil(budget * n)."""
    if budget_count is not None:
        if isinstance(budget_count, bool) or int(budget_count) != budget_count or budget_count < 1:
            raise ConfigError("select.budget_count", f"{budget_count!r} is not a positive integer.",
                              "give a count >= 1, or use select.budget for a fraction.")
        if budget_count > n:
            raise ConfigError("select.budget_count",
                              f"{budget_count} exceeds the {n} pairs available.",
                              f"use a count <= {n}, or select.budget=1.0 to keep everything.")
        return int(budget_count)
    if budget is None or not (isinstance(budget, (int, float)) and 0 < budget <= 1):
        raise ConfigError("select.budget", f"{budget!r} is not a fraction in (0, 1].",
                          "use e.g. select.budget=0.3, or select.budget_count for a count.")
    if n < 1:
        raise ConfigError("select.budget", "the selection pool is empty (0 pairs to rank).",
                          "check the aggregate stage's counts in report.md: every pair was "
                          "rejected or held out (aggregate.test_fraction).")
    # the tiny epsilon keeps 0.3 * 10 = 3.0000000000000004 from becoming 4
    return min(n, math.ceil(budget * n - 1e-9))


def apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across groups in proportion to ``counts`` (largest remainder, ties by
    group order), never giving a group more than it has."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() == 0:
        return np.zeros_like(counts)
    exact = counts * total / counts.sum()
    quota = np.minimum(np.floor(exact).astype(np.int64), counts)
    rest = total - quota.sum()
    order = np.argsort(-(exact - quota), kind="stable")
    while rest > 0:
        for g in order:
            if rest == 0:
                break
            if quota[g] < counts[g]:
                quota[g] += 1
                rest -= 1
    return quota


@dataclass
class Boundary:
    """Rank boundary of the first ``n`` rows in rank space (k = key, or -key if descending).

    Every row with k < threshold is kept, plus the ``n_ties`` smallest pair ids among rows with
    k == threshold. ``threshold`` NaN means the budget reaches into the NaN rows: every non-NaN
    row is kept, plus ``n_ties`` NaN rows by pair id.
    """

    threshold: float
    n_below: int
    n_ties: int


def find_boundary(k: np.ndarray, n: int) -> Boundary:
    """Selection pass: O(N) with np.partition, no sort."""
    k = np.asarray(k, dtype=np.float64)
    valid = ~np.isnan(k)
    n_valid = int(valid.sum())
    if n <= 0:
        return Boundary(-np.inf, 0, 0)
    if n > n_valid:
        return Boundary(np.nan, n_valid, n - n_valid)
    vals = k[valid] if n_valid < len(k) else k
    t = float(np.partition(vals, n - 1)[n - 1])
    n_below = int(np.count_nonzero(vals < t))
    return Boundary(t, n_below, n - n_below)


def _tie_mask(k: np.ndarray, b: Boundary) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept outright, rows tied at the boundary)."""
    if np.isnan(b.threshold):
        return ~np.isnan(k), np.isnan(k)
    return k < b.threshold, k == b.threshold


def smallest_ids(pids: np.ndarray, m: int) -> np.ndarray:
    """Positions of the ``m`` smallest pair ids (string order), only the tie set is sorted."""
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.argsort(pids, kind="stable")[:m]


def within_limit(k: np.ndarray, n: int, limit: float | None) -> int:
    """The budget ``n`` capped by a threshold rule: at most the rows with rank key <= ``limit``
    (rank space: already negated for descending keys). Since the rank order is the key
    ascending, those rows are exactly the first ones, so a threshold is a smaller budget."""
    if limit is None:
        return n
    return min(n, int(np.count_nonzero(k <= limit)))  # NaN compares False: never passes


def _support_one(k: np.ndarray, pid: np.ndarray, n: int,
                 limit: float | None = None) -> np.ndarray:
    b = find_boundary(k, within_limit(k, n, limit))
    below, tied = _tie_mask(k, b)
    keep = below.copy()
    tie_rows = np.flatnonzero(tied)
    keep[tie_rows[smallest_ids(pid[tie_rows], b.n_ties)]] = True
    return keep


def threshold_support(key: Sequence[float], pair_id: Sequence, n_select: int,
                      descending: bool = False, groups: Sequence | None = None,
                      threshold: float | None = None) -> np.ndarray:
    """Boolean mask of the ``n_select`` best rows (the selectors' exact order, see module doc).

    ``groups`` (e.g. the aspect column) splits the budget across groups in proportion to their
    sizes by ``select.apportion``, as ``stratify_by`` does. ``threshold`` (key units) keeps
    only rows with key <= threshold (>= when ``descending``), within the budget (of each group).
    """
    k = np.asarray(key, dtype=np.float64)
    k = -k if descending else k
    limit = None if threshold is None else (-threshold if descending else threshold)
    pid = np.asarray(pd.Series(pair_id).astype(str).to_numpy(), dtype=str)
    if groups is None:
        return _support_one(k, pid, n_select, limit)
    g = pd.Series(groups).astype(str).to_numpy()
    names = np.array(sorted(set(g)))
    quota = apportion(np.array([(g == x).sum() for x in names]), n_select)
    keep = np.zeros(len(k), dtype=bool)
    for name, m in zip(names, quota):
        rows = np.flatnonzero(g == name)
        keep[rows[_support_one(k[rows], pid[rows], int(m), limit)]] = True
    return keep
