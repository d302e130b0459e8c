"""Selectors: turn a score table into a subset under a budget (scikit-learn estimator style).

    sel = PDSelector(budget=0.3, random_state=0).fit(scores)   # scores: pair_id, pd, aspect, ...
    keep = sel.get_support()          # boolean mask aligned with the rows of `scores`
    sel.n_select_, sel.order_          # learned values end in '_'

Every selector ranks by one key and keeps the first ``n_select_`` rows; ties break stably by
``pair_id`` (so the same scores always give the same subset, whatever the row order). Rows
whose key is NaN rank last. With ``stratify_by="aspect"`` the budget is split across aspects in
proportion to their pair counts (largest remainder), then filled within each aspect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .boundary import apportion, budget_size, threshold_support  # noqa: F401 (apportion: public)


class BaseSelector:
    """Keep the ``n_select_`` best rows by ``key`` (ascending unless ``descending``)."""

    key: str = ""
    descending: bool = False
    name: str = ""

    def __init__(self, budget: float = 0.3, budget_count: int | None = None,
                 stratify_by: str | None = None, random_state: int = 0):
        self.budget = budget
        self.budget_count = budget_count
        self.stratify_by = stratify_by
        self.random_state = random_state

    # subclasses may compute the ranking key from the table (random does)
    def _key_values(self, scores: pd.DataFrame) -> np.ndarray:
        if self.key not in scores.columns:
            raise ConfigError("select.method",
                              f"selector '{self.name}' needs a '{self.key}' column in the score "
                              f"table, which has {list(scores.columns)}.",
                              "run the score stage first (or pick a selector whose score exists).")
        return scores[self.key].to_numpy(dtype=np.float64)

    def _rank(self, key: np.ndarray, pair_id: np.ndarray) -> np.ndarray:
        """Positions of rows in rank order: key (NaN last), then pair_id."""
        k = -key if self.descending else key
        df = pd.DataFrame({"nan": np.isnan(k), "k": np.nan_to_num(k, nan=0.0), "pid": pair_id})
        return df.sort_values(["nan", "k", "pid"], kind="mergesort").index.to_numpy()

    def fit(self, scores: pd.DataFrame, y=None) -> "BaseSelector":
        if "pair_id" not in scores.columns:
            raise ConfigError("select", "the score table has no 'pair_id' column.",
                              "pass the table written by the score stage.")
        scores = scores.reset_index(drop=True)
        n = len(scores)
        self.n_select_ = budget_size(n, self.budget, self.budget_count)
        self.key_ = self._key_values(scores)
        pid = scores["pair_id"].astype(str).to_numpy()
        groups = scores[self.stratify_by].astype(str).to_numpy() if self.stratify_by else None
        # the support comes from the budget boundary, as in the streamed selection (one
        # implementation); order_ is the full rank the select stage reports
        self.support_ = threshold_support(self.key_, pid, self.n_select_, self.descending, groups)
        if groups is not None:
            names = np.array(sorted(set(groups)))
            counts = np.array([(groups == g).sum() for g in names])
            self.quota_ = dict(zip(names.tolist(), apportion(counts, self.n_select_).tolist()))
            parts = [rows[self._rank(self.key_[rows], pid[rows])]
                     for rows in (np.flatnonzero(groups == g) for g in names)]
            self.order_ = np.concatenate(parts) if parts else np.zeros(0, int)
        else:
            self.order_ = self._rank(self.key_, pid)
        return self

    def get_support(self, indices: bool = False) -> np.ndarray:
        return np.flatnonzero(self.support_) if indices else self.support_.copy()

    def transform(self, scores: pd.DataFrame) -> pd.DataFrame:
        return scores.reset_index(drop=True)[self.support_]


class PDSelector(BaseSelector):
    """The method: keep the most negative preference divergence (consensus pairs)."""

    key, descending, name = "pd", False, "pd"


class PDHighSelector(BaseSelector):
    """Ablation: keep the most positive PD (the most conflicting pairs)."""

    key, descending, name = "pd", True, "pd_high"


class PDRatiSelector(BaseSelector):
    """Oracle: PD computed from the true ratings of every aspect (the paper's PD-rati)."""

    key, descending, name = "pd_rati", False, "pd_rati"


class MarginSelector(BaseSelector):
    """RAF-like baseline: keep the largest margin of one unified reward model."""

    key, descending, name = "margin", True, "margin"


class RandomSelector(BaseSelector):
    """Uniform random subset of the budget size (seeded by ``random_state``)."""

    name = "random"

    def _key_values(self, scores: pd.DataFrame) -> np.ndarray:
        # rank by a seeded draw attached to the pair id, so row order does not matter
        pid = scores["pair_id"].astype(str).to_numpy()
        order = np.argsort(pid, kind="stable")
        key = np.empty(len(pid))
        key[order] = np.random.default_rng(self.random_state).permutation(len(pid))
        return key


class FullSelector(BaseSelector):
    """Baseline ALL: every pair (the budget is ignored)."""

    name = "full"

    def __init__(self, budget: float = 1.0, budget_count: int | None = None,
                 stratify_by: str | None = None, random_state: int = 0):
        super().__init__(1.0, None, None, random_state)

    def _key_values(self, scores: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(scores))


SELECTORS: dict[str, type[BaseSelector]] = {
    cls.name: cls for cls in (PDSelector, PDHighSelector, PDRatiSelector, MarginSelector,
                              RandomSelector, FullSelector)
}


def make_selector(method: str, **kwargs) -> BaseSelector:
    if method not in SELECTORS:
        import difflib

        close = difflib.get_close_matches(method, SELECTORS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError("select.method", f"unknown selector {method!r}{hint}.",
                          f"choose from {sorted(SELECTORS)}.")
    return SELECTORS[method](**kwargs)


def selection_table(pool: pd.DataFrame, selector: BaseSelector, method: str) -> pd.DataFrame:
    """``select/selection.parquet``: pair_id, aspect, selected, rank (0 = kept first; the
    selector's full order), method, and the pool's pd / margin / pd_rati columns."""
    rank = np.empty(len(pool), np.int64)
    rank[selector.order_] = np.arange(len(pool))
    table = pd.DataFrame({"pair_id": pool["pair_id"], "aspect": pool["aspect"],
                          "selected": selector.get_support(), "rank": rank, "method": method})
    for col in ("pd", "margin", "pd_rati"):
        if col in pool.columns:
            table[col] = pool[col].to_numpy()
    return table
