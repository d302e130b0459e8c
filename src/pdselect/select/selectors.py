"""Selectors: turn a score table into a subset under a budget (scikit-learn estimator style).

    sel = PDSelector(budget=0.3, random_state=0).fit(scores)   # scores: pair_id, pd, aspect, ...
    keep = sel.get_support()          # boolean mask aligned with the rows of `scores`
    sel.n_select_, sel.order_          # learned values end in '_'

Every selector ranks by one key and keeps the first ``n_select_`` rows; ties break stably by
``pair_id`` (so the same scores always give the same subset, whatever the row order). Rows
whose key is NaN rank last. With ``stratify_by="aspect"`` the budget is split across aspects in
proportion to their pair counts (largest remainder), then filled within each aspect.

Selection rules besides the budget, all through the same boundary (select/boundary.py):

    PDSelector(budget=1.0, threshold=0.0)        # pd <= 0 ("no estimated conflict"), uncapped
    MarginSelector(budget=0.3, threshold=0.5)    # margin >= 0.5, at most 30% of the pool
    CombineSelector(op="and", methods=["pd", "margin"], thresholds={"margin": 0.5})
    LengthSelector(budget=0.3)                   # chosen most longer than rejected (characters)
    IRGSelector(budget=0.3)                      # smallest implicit-reward gap (select/irg.py)

A threshold only narrows the budget: the kept rows are the first min(budget, #passing) of the
same rank order (``budget=1.0`` for the threshold alone), so ``n_select_`` can be below the
budget; ``n_budget_`` is the budget's size.
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
                 stratify_by: str | None = None, random_state: int = 0,
                 threshold: float | None = None):
        self.budget = budget
        self.budget_count = budget_count
        self.stratify_by = stratify_by
        self.random_state = random_state
        self.threshold = threshold

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
        self.n_budget_ = budget_size(n, self.budget, self.budget_count)
        self.key_ = self._key_values(scores)
        pid = scores["pair_id"].astype(str).to_numpy()
        groups = scores[self.stratify_by].astype(str).to_numpy() if self.stratify_by else None
        if self.threshold is not None and not self.key:
            raise ConfigError("select", f"selector '{self.name}' takes no threshold (it does not "
                              "rank by a score).", "drop the threshold, or use pd / margin.")
        # the support comes from the budget boundary, as in the streamed selection (one
        # implementation); order_ is the full rank the select stage reports
        self.support_ = threshold_support(self.key_, pid, self.n_budget_, self.descending, groups,
                                          self.threshold)
        self.n_select_ = int(self.support_.sum())
        if groups is not None:
            names = np.array(sorted(set(groups)))
            counts = np.array([(groups == g).sum() for g in names])
            self.quota_ = dict(zip(names.tolist(), apportion(counts, self.n_budget_).tolist()))
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


class LengthSelector(BaseSelector):
    """Baseline "longer wins": keep the pairs whose chosen response is most longer than the
    rejected one, len_chosen - len_rejected in CHARACTERS (the pair table's lengths), largest
    first. A selector that does not beat it adds nothing a length filter would not."""

    key, descending, name = "len_gap", True, "length"

    def _key_values(self, scores: pd.DataFrame) -> np.ndarray:
        if "len_gap" in scores.columns:
            return scores["len_gap"].to_numpy(dtype=np.float64)
        if {"len_chosen", "len_rejected"} <= set(scores.columns):
            return (scores["len_chosen"].to_numpy(np.float64)
                    - scores["len_rejected"].to_numpy(np.float64))
        raise ConfigError("select.method", "selector 'length' needs 'len_chosen' and "
                          f"'len_rejected' (or 'len_gap') columns; the table has "
                          f"{list(scores.columns)}.", "pass the score pool of "
                          "run.stage_tables.load_score_pool, which joins the pair lengths.")


class IRGSelector(BaseSelector):
    """Implicit-reward gap (arXiv 2508.04149): keep the SMALLEST r(x, y_w) - r(x, y_l) of a DPO
    policy against its reference, the pairs that policy finds hardest. The select stage fills
    ``irg_gap`` when ``select.method=irg`` (select/irg.py, needs align.policy)."""

    key, descending, name = "irg_gap", False, "irg"


class FullSelector(BaseSelector):
    """Baseline ALL: every pair (the budget is ignored)."""

    name = "full"

    def __init__(self, budget: float = 1.0, budget_count: int | None = None,
                 stratify_by: str | None = None, random_state: int = 0,
                 threshold: float | None = None):
        super().__init__(1.0, None, None, random_state, threshold)

    def _key_values(self, scores: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(scores))


SELECTORS: dict[str, type[BaseSelector]] = {
    cls.name: cls for cls in (PDSelector, PDHighSelector, PDRatiSelector, MarginSelector,
                              RandomSelector, FullSelector, LengthSelector, IRGSelector)
}
COMBINE_OPS = ("and", "or")


class CombineSelector(BaseSelector):
    """Intersection (``op="and"``) or union (``"or"``) of two or more selectors' kept sets, each
    under the same budget / stratification and its own threshold (``thresholds``: method ->
    threshold in its key's units). The rank order: kept pairs first, each part in the first
    method's order (ties by pair id). ``n_select_`` is the size of the combined set."""

    name = "combine"

    def __init__(self, op: str = "and", methods: tuple = ("pd", "margin"),
                 thresholds: dict | None = None, budget: float = 0.3,
                 budget_count: int | None = None, stratify_by: str | None = None,
                 random_state: int = 0):
        super().__init__(budget, budget_count, stratify_by, random_state)
        self.op = op
        self.methods = methods
        self.thresholds = thresholds

    def fit(self, scores: pd.DataFrame, y=None) -> "CombineSelector":
        if self.op not in COMBINE_OPS or len(self.methods) < 2:
            raise ConfigError("select.combine", f"op={self.op!r} with methods "
                              f"{list(self.methods)}: need op 'and' or 'or' and >= 2 methods.",
                              "e.g. select.combine={op: and, methods: [pd, margin]}.")
        scores = scores.reset_index(drop=True)
        thr = self.thresholds or {}
        self.members_ = [make_selector(m, budget=self.budget, budget_count=self.budget_count,
                                       stratify_by=self.stratify_by,
                                       random_state=self.random_state,
                                       threshold=thr.get(m)).fit(scores) for m in self.methods]
        masks = np.array([m.get_support() for m in self.members_])
        self.support_ = masks.all(0) if self.op == "and" else masks.any(0)
        self.n_select_ = int(self.support_.sum())
        self.n_budget_ = self.members_[0].n_budget_
        pos = np.empty(len(scores), np.int64)
        pos[self.members_[0].order_] = np.arange(len(scores))
        self.order_ = np.lexsort((pos, ~self.support_))  # kept first, then the first's order
        return self


def make_selector(method: str, **kwargs) -> BaseSelector:
    if method == "combine":
        return CombineSelector(**kwargs)
    if method not in SELECTORS:
        import difflib

        close = difflib.get_close_matches(method, SELECTORS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError("select.method", f"unknown selector {method!r}{hint}.",
                          f"choose from {sorted(SELECTORS)} or 'combine'.")
    return SELECTORS[method](**kwargs)


def rule_members(s) -> list[str]:
    """The selectors a select config ``s`` (SelectConfig) runs: select.combine's, or method."""
    return list(s.combine.get("methods", [])) if s.method == "combine" else [s.method]


def rule_selector(s, seed: int) -> BaseSelector:
    """The (unfitted) selector a select config ``s`` describes: method, budget, stratification,
    the threshold rules (pd_threshold for pd, min_margin for margin) or select.combine."""
    thresholds = {"pd": s.pd_threshold, "margin": s.min_margin}
    common = dict(budget=s.budget, budget_count=s.budget_count, random_state=seed,
                  stratify_by="aspect" if s.stratify_by_aspect else None)
    if s.method == "combine":
        return make_selector("combine", op=s.combine["op"], methods=rule_members(s),
                             thresholds=thresholds, **common)
    return make_selector(s.method, threshold=thresholds.get(s.method), **common)


def selection_table(pool: pd.DataFrame, selector: BaseSelector, method: str) -> pd.DataFrame:
    """``select/selection.parquet``: pair_id, aspect, selected, rank (0 = kept first; the
    selector's full order), method, and the pool's pd / margin / pd_rati columns."""
    rank = np.empty(len(pool), np.int64)
    rank[selector.order_] = np.arange(len(pool))
    table = pd.DataFrame({"pair_id": pool["pair_id"], "aspect": pool["aspect"],
                          "selected": selector.get_support(), "rank": rank, "method": method})
    for col in ("pd", "margin", "pd_rati", "len_gap", "irg_gap"):
        if col in pool.columns:
            table[col] = pool[col].to_numpy()
    return table
