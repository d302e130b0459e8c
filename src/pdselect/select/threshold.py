"""Budget selection without a global sort: a selection pass finds the key value at the budget
boundary, a filter pass keeps everything before it.

The rank order is exactly :class:`pdselect.select.selectors.BaseSelector`'s: key ascending (negated for
descending selectors), NaN last, ties by ``str(pair_id)``. So

    threshold_support(scores["pd"], scores["pair_id"], n) == PDSelector(budget_count=n)
                                                              .fit(scores).get_support()

(pair ids must be unique, as the pair table guarantees). Cost: ``np.partition`` on the key
column (O(N), 8 bytes per pair in memory) plus a sort of only the pairs TIED with the boundary
value, instead of a sort of all N (key, pair_id) rows.

    select_parts(run / "score" / "pd", out_dir, method="pd", budget=0.3)   # streams the parts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..run.artifacts import atomic_path, write_json
from ..errors import ConfigError
from .selectors import SELECTORS, apportion, budget_size


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


def _support_one(k: np.ndarray, pid: np.ndarray, n: int) -> np.ndarray:
    b = find_boundary(k, n)
    below, tied = _tie_mask(k, b)
    keep = below.copy()
    tie_rows = np.flatnonzero(tied)
    keep[tie_rows[smallest_ids(pid[tie_rows], b.n_ties)]] = True
    return keep


def threshold_support(key: Sequence[float], pair_id: Sequence, n_select: int,
                      descending: bool = False, groups: Sequence | None = None) -> np.ndarray:
    """Boolean mask of the ``n_select`` best rows (the selectors' exact order, see module doc).

    ``groups`` (e.g. the aspect column) splits the budget across groups in proportion to their
    sizes by ``select.apportion``, as ``stratify_by`` does.
    """
    k = np.asarray(key, dtype=np.float64)
    k = -k if descending else k
    pid = np.asarray(pd.Series(pair_id).astype(str).to_numpy(), dtype=str)
    if groups is None:
        return _support_one(k, pid, n_select)
    g = pd.Series(groups).astype(str).to_numpy()
    names = np.array(sorted(set(g)))
    quota = apportion(np.array([(g == x).sum() for x in names]), n_select)
    keep = np.zeros(len(k), dtype=bool)
    for name, m in zip(names, quota):
        rows = np.flatnonzero(g == name)
        keep[rows[_support_one(k[rows], pid[rows], int(m))]] = True
    return keep


# ----------------------------------------------------------------------------- parts on disk
def selector_key(method: str) -> tuple[str, bool]:
    """(score column, descending) of a rank-by-column selector."""
    cls = SELECTORS.get(method)
    if cls is None or not cls.key:
        ok = sorted(m for m, c in SELECTORS.items() if c.key)
        raise ConfigError("select.method", f"{method!r} cannot run as a streamed threshold "
                          f"selection (it does not rank by a score column).",
                          f"use one of {ok}, or the in-memory selector for small data.")
    return cls.key, cls.descending


def select_parts(parts_dir: str | Path, out_dir: str | Path, method: str = "pd",
                 budget: float = 0.3, budget_count: int | None = None,
                 stratify_by: str | None = None) -> dict:
    """Streamed selection over score parts: load the key column (+ group column), find each
    boundary, collect the tie set's pair ids in one pass, then write ``selection/part-*`` with
    pair_id, aspect, <key>, selected. Returns a summary with the thresholds."""
    key, desc = selector_key(method)
    parts = sorted(Path(parts_dir).glob("part-*.parquet"))
    cols = [key] + ([stratify_by] if stratify_by else [])
    tabs = [pq.read_table(p, columns=cols) for p in parts]
    k = np.concatenate([t.column(key).to_numpy() for t in tabs]).astype(np.float64)
    k = -k if desc else k
    g = (np.concatenate([t.column(stratify_by).to_numpy(zero_copy_only=False) for t in tabs])
         .astype(str) if stratify_by else np.zeros(len(k), dtype="<U1"))
    del tabs
    n_select = budget_size(len(k), budget, budget_count)
    names = np.array(sorted(set(g)))
    quota = (apportion(np.array([(g == x).sum() for x in names]), n_select) if stratify_by
             else np.array([n_select]))
    bounds = {x: find_boundary(k[g == x], int(m)) for x, m in zip(names, quota)}
    # pass 2: pair ids of the rows tied at each boundary -> the ones that make the cut
    winners: set[str] = set()
    offsets = np.concatenate([[0], np.cumsum([pq.ParquetFile(p).metadata.num_rows
                                              for p in parts])]).astype(np.int64)
    ties: dict[str, list[np.ndarray]] = {x: [] for x in names}
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        kk, gg = k[lo:hi], g[lo:hi]
        tied_any = np.zeros(hi - lo, dtype=bool)
        for x, b in bounds.items():
            tied_any |= (gg == x) & _tie_mask(kk, b)[1]
        if tied_any.any():
            pid = pq.read_table(p, columns=["pair_id"]).column("pair_id").to_numpy(
                zero_copy_only=False).astype(str)
            for x, b in bounds.items():
                ties[x].append(pid[(gg == x) & _tie_mask(kk, b)[1]])
    for x, b in bounds.items():
        cand = np.concatenate(ties[x]) if ties[x] else np.zeros(0, dtype=str)
        winners.update(cand[smallest_ids(cand, b.n_ties)].tolist())
    # pass 3: filter
    n_kept = 0
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        t = pq.read_table(p, columns=["pair_id", "aspect", key]).to_pandas()
        kk, gg = k[lo:hi], g[lo:hi]
        keep = np.zeros(hi - lo, dtype=bool)
        for x, b in bounds.items():
            below, tied = _tie_mask(kk, b)
            keep |= (gg == x) & below
        pid = t["pair_id"].astype(str).to_numpy()
        keep |= np.isin(pid, list(winners)) if winners else False
        t["selected"] = keep
        n_kept += int(keep.sum())
        with atomic_path(Path(out_dir) / p.name) as tmp:
            pq.write_table(pa.Table.from_pandas(t, preserve_index=False), tmp)
    summary = {"method": method, "n_pool": int(len(k)), "n_selected": n_kept,
               "thresholds": {x: {"key": None if np.isnan(b.threshold)
                                  else float(-b.threshold if desc else b.threshold),
                                  "n_below": b.n_below, "n_ties_taken": b.n_ties}
                              for x, b in bounds.items()}}
    write_json(Path(out_dir) / "meta.json", summary)
    return summary
