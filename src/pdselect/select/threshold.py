"""Budget selection over score parts on disk, without a global sort: a selection pass finds the
key value at the budget boundary (select/boundary.py), a filter pass keeps everything before it.

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

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import ConfigError
from ..score import storage
from .boundary import (_tie_mask, apportion, budget_size, find_boundary,  # noqa: F401
                       smallest_ids, threshold_support)  # threshold_support: public here too
from .selectors import SELECTORS


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
    pair_id, aspect, <key>, selected. Returns a summary with the thresholds. Both folders may
    be fsspec URIs (score/storage.py: each output part is written complete or not at all)."""
    key, desc = selector_key(method)
    parts = storage.glob(storage.resolve(parts_dir), "part-*.parquet")
    out = storage.resolve(out_dir)
    k, g = _load_keys(parts, key, desc, stratify_by)
    n_select = budget_size(len(k), budget, budget_count)
    names = np.array(sorted(set(g)))
    quota = (apportion(np.array([(g == x).sum() for x in names]), n_select) if stratify_by
             else np.array([n_select]))
    bounds = {x: find_boundary(k[g == x], int(m)) for x, m in zip(names, quota)}
    offsets = np.concatenate([[0], np.cumsum([storage.num_rows(p)
                                              for p in parts])]).astype(np.int64)
    winners = _tie_winners(parts, offsets, k, g, bounds)
    n_kept = _write_selection(parts, offsets, k, g, bounds, winners, key, out)
    summary = {"method": method, "n_pool": int(len(k)), "n_selected": n_kept,
               "thresholds": {x: {"key": None if np.isnan(b.threshold)
                                  else float(-b.threshold if desc else b.threshold),
                                  "n_below": b.n_below, "n_ties_taken": b.n_ties}
                              for x, b in bounds.items()}}
    storage.write_json(out / "meta.json", summary)
    return summary


def _load_keys(parts: list, key: str, desc: bool,
               stratify_by: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: the rank key of every row (negated when descending) and its group label."""
    cols = [key] + ([stratify_by] if stratify_by else [])
    tabs = [storage.read_table(p, columns=cols) for p in parts]
    k = np.concatenate([t.column(key).to_numpy() for t in tabs]).astype(np.float64)
    k = -k if desc else k
    g = (np.concatenate([t.column(stratify_by).to_numpy(zero_copy_only=False) for t in tabs])
         .astype(str) if stratify_by else np.zeros(len(k), dtype="<U1"))
    return k, g


def _tie_winners(parts: list, offsets: np.ndarray, k: np.ndarray, g: np.ndarray,
                 bounds: dict) -> set[str]:
    """Pass 2: pair ids of the rows tied at each boundary -> the ones that make the cut."""
    winners: set[str] = set()
    ties: dict[str, list[np.ndarray]] = {x: [] for x in bounds}
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        kk, gg = k[lo:hi], g[lo:hi]
        tied_any = np.zeros(hi - lo, dtype=bool)
        for x, b in bounds.items():
            tied_any |= (gg == x) & _tie_mask(kk, b)[1]
        if tied_any.any():
            pid = storage.read_table(p, columns=["pair_id"]).column("pair_id").to_numpy(
                zero_copy_only=False).astype(str)
            for x, b in bounds.items():
                ties[x].append(pid[(gg == x) & _tie_mask(kk, b)[1]])
    for x, b in bounds.items():
        cand = np.concatenate(ties[x]) if ties[x] else np.zeros(0, dtype=str)
        winners.update(cand[smallest_ids(cand, b.n_ties)].tolist())
    return winners


def _write_selection(parts: list, offsets: np.ndarray, k: np.ndarray, g: np.ndarray,
                     bounds: dict, winners: set[str], key: str, out) -> int:
    """Pass 3: each part's rows with ``selected``, written to ``out``; returns rows kept."""
    n_kept = 0
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        t = storage.read_table(p, columns=["pair_id", "aspect", key]).to_pandas()
        kk, gg = k[lo:hi], g[lo:hi]
        keep = np.zeros(hi - lo, dtype=bool)
        for x, b in bounds.items():
            below, tied = _tie_mask(kk, b)
            keep |= (gg == x) & below
        pid = t["pair_id"].astype(str).to_numpy()
        keep |= np.isin(pid, list(winners)) if winners else False
        t["selected"] = keep
        n_kept += int(keep.sum())
        storage.write_table(out / p.name, pa.Table.from_pandas(t, preserve_index=False))
    return n_kept
