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
    select_parts(parts, out, "pd", budget=1.0, threshold=0.0)               # pd <= 0
    select_parts(parts, out, budget=0.3, combine={"op": "and", "methods": ["pd", "margin"],
                                                   "thresholds": {"margin": 0.5}})

The rules are the in-memory selectors' (select/selectors.py): a threshold narrows each group's
budget to the rows passing it (boundary.within_limit); a combination keeps the intersection or
union of its members' streamed selections; ``length`` ranks by ``len_gap`` (or len_chosen -
len_rejected) when the parts carry it. Shard sizes change nothing (tests/test_select_rules.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import ConfigError
from ..score import storage
from .boundary import (_tie_mask, apportion, budget_size, find_boundary,  # noqa: F401
                       smallest_ids, threshold_support,  # threshold_support: public here too
                       within_limit)
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
                 stratify_by: str | None = None, threshold: float | None = None,
                 combine: dict | None = None) -> dict:
    """Streamed selection over score parts: load the key column(s) (+ group column), find each
    boundary, collect the tie sets' pair ids in one pass, then write ``selection/part-*`` with
    pair_id, aspect, <key>, selected. Returns a summary with the thresholds. Both folders may
    be fsspec URIs (score/storage.py: each output part is written complete or not at all).

    ``threshold``: keep only key <= threshold (>= for descending keys), within the budget.
    ``combine``: {"op": "and" | "or", "methods": [...], "thresholds": {method: t}} replaces
    ``method`` / ``threshold`` (see selectors.CombineSelector)."""
    op, members = _members(method, threshold, combine)
    parts = storage.glob(storage.resolve(parts_dir), "part-*.parquet")
    out = storage.resolve(out_dir)
    g = _load_groups(parts, stratify_by)
    n_select = budget_size(len(g), budget, budget_count)
    names = np.array(sorted(set(g)))
    quota = (apportion(np.array([(g == x).sum() for x in names]), n_select) if stratify_by
             else np.array([n_select]))
    offsets = np.concatenate([[0], np.cumsum([storage.num_rows(p)
                                              for p in parts])]).astype(np.int64)
    plans = [_plan(parts, offsets, g, names, quota, m, t) for m, t in members]
    n_kept = _write_selection(parts, offsets, g, plans, op, out)
    summary = {"method": "combine" if combine else method, "n_pool": int(len(g)),
               "n_budget": int(n_select), "n_selected": n_kept,
               "thresholds": plans[0]["summary"]}
    if combine:
        summary.update(op=op, members={p["method"]: p["summary"] for p in plans})
    storage.write_json(out / "meta.json", summary)
    return summary


def _members(method: str, threshold: float | None,
             combine: dict | None) -> tuple[str, list[tuple[str, float | None]]]:
    if not combine:
        selector_key(method)
        return "and", [(method, threshold)]
    op, methods = combine.get("op"), list(combine.get("methods") or [])
    if op not in ("and", "or") or len(methods) < 2:
        raise ConfigError("select.combine", f"{combine!r}: need op 'and' or 'or' and >= 2 "
                          "methods.", "e.g. {op: and, methods: [pd, margin]}.")
    thr = combine.get("thresholds") or {}
    for m in methods:
        selector_key(m)  # refuse a selector without a key before any part is read
    return op, [(m, thr.get(m)) for m in methods]


def _plan(parts: list, offsets: np.ndarray, g: np.ndarray, names: np.ndarray,
          quota: np.ndarray, method: str, threshold: float | None) -> dict:
    """One member rule: its rank keys, each group's boundary (the budget capped by the
    threshold) and the pair ids that win the ties at the boundaries."""
    key, desc = selector_key(method)
    k = _load_key(parts, key)
    k = -k if desc else k
    limit = None if threshold is None else (-threshold if desc else threshold)
    bounds = {}
    for x, m in zip(names, quota):
        kx = k[g == x]
        bounds[x] = find_boundary(kx, within_limit(kx, int(m), limit))
    winners = _tie_winners(parts, offsets, k, g, bounds)
    summary = {x: {"key": None if np.isnan(b.threshold)
                   else float(-b.threshold if desc else b.threshold),
                   "n_below": b.n_below, "n_ties_taken": b.n_ties} for x, b in bounds.items()}
    return {"method": method, "key": key, "desc": desc, "k": k, "bounds": bounds,
            "winners": winners, "summary": summary}


def _load_key(parts: list, key: str) -> np.ndarray:
    """Pass 1: the key column of every row; ``len_gap`` from the pair lengths when absent."""
    vals = []
    for p in parts:
        with storage.open_parquet(p) as pf:
            names = set(pf.schema_arrow.names)
        if key == "len_gap" and key not in names and {"len_chosen", "len_rejected"} <= names:
            t = storage.read_table(p, columns=["len_chosen", "len_rejected"])
            vals.append(t.column("len_chosen").to_numpy().astype(np.float64)
                        - t.column("len_rejected").to_numpy().astype(np.float64))
        elif key in names:
            vals.append(storage.read_table(p, columns=[key]).column(key).to_numpy()
                        .astype(np.float64))
        else:
            raise ConfigError("select.method", f"score part {storage.uri(p)} has no {key!r} "
                              f"column (it has {sorted(names)}).", "score with the column the "
                              "selector ranks by, or pick another selector.")
    return np.concatenate(vals) if vals else np.zeros(0)


def _load_groups(parts: list, stratify_by: str | None) -> np.ndarray:
    """The group label of every row (one group when not stratified)."""
    if not stratify_by:
        return np.zeros(sum(storage.num_rows(p) for p in parts), dtype="<U1")
    return np.concatenate([storage.read_table(p, columns=[stratify_by]).column(stratify_by)
                           .to_numpy(zero_copy_only=False) for p in parts]).astype(str)


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


def _keep_rows(plan: dict, lo: int, hi: int, gg: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """One member's kept rows of one part: below its group's boundary, or a tie winner."""
    kk = plan["k"][lo:hi]
    keep = np.zeros(hi - lo, dtype=bool)
    for x, b in plan["bounds"].items():
        keep |= (gg == x) & _tie_mask(kk, b)[0]
    if plan["winners"]:
        keep |= np.isin(pid, list(plan["winners"]))
    return keep


def _write_selection(parts: list, offsets: np.ndarray, g: np.ndarray, plans: list[dict],
                     op: str, out) -> int:
    """Pass 3: each part's rows with each member's key and ``selected``; returns rows kept."""
    n_kept = 0
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        t = storage.read_table(p, columns=["pair_id", "aspect"]).to_pandas()
        pid = t["pair_id"].astype(str).to_numpy()
        keeps = [_keep_rows(pl, lo, hi, g[lo:hi], pid) for pl in plans]
        for pl in plans:
            t[pl["key"]] = -pl["k"][lo:hi] if pl["desc"] else pl["k"][lo:hi]
        keep = np.all(keeps, 0) if op == "and" else np.any(keeps, 0)
        t["selected"] = keep
        n_kept += int(keep.sum())
        storage.write_table(out / p.name, pa.Table.from_pandas(t, preserve_index=False))
    return n_kept
