"""One contract every selector passes, plus property-based checks (hypothesis)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdselect.errors import ConfigError
from pdselect.select.selectors import SELECTORS, apportion, budget_size, make_selector

# every selector of the registry, plus a combination (same budget: "and" of pd with itself)
CONTRACT = [(name, {}) for name in sorted(SELECTORS)] + [
    ("combine", {"op": "and", "methods": ["pd", "pd"]}),
    ("combine", {"op": "or", "methods": ["margin", "margin"]})]


def table(n=40, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    vals = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
    lens = rng.integers(0, 4, n) if ties else rng.permutation(n)
    return pd.DataFrame({"pair_id": [f"p{i:03d}" for i in range(n)],
                         "aspect": rng.choice(["a", "b", "c"], n),
                         "pd": vals, "pd_rati": vals[::-1].copy(), "margin": -vals,
                         "len_chosen": 100 + lens, "len_rejected": 100 + lens[::-1],
                         "irg_gap": vals[::-1] * 2})


@pytest.mark.parametrize("name,kw", CONTRACT)
class TestContract:
    def test_constructor_stores_only(self, name, kw):
        sel = make_selector(name, budget=0.25, random_state=3, **kw)
        assert not [k for k in vars(sel) if k.endswith("_")]

    def test_fit_returns_self_and_budget_exact(self, name, kw):
        t = table()
        sel = make_selector(name, budget=0.25, random_state=3, **kw)
        assert sel.fit(t) is sel
        expected = 40 if name == "full" else 10
        assert sel.get_support().sum() == expected == sel.n_select_
        assert len(sel.get_support(indices=True)) == expected
        assert sorted(sel.order_) == list(range(40))  # order_ is a permutation, kept first
        assert sel.get_support()[sel.order_[:expected]].all()

    def test_row_order_does_not_matter(self, name, kw):
        t = table(ties=True)
        a = make_selector(name, budget=0.3, random_state=1, **kw).fit(t)
        perm = np.random.default_rng(5).permutation(len(t))
        b = make_selector(name, budget=0.3, random_state=1, **kw).fit(t.iloc[perm])
        assert set(t["pair_id"][a.get_support()]) == set(t["pair_id"].iloc[perm][b.get_support()])

    def test_deterministic(self, name, kw):
        t = table(ties=True)
        a = make_selector(name, budget=0.5, random_state=7, **kw).fit(t).get_support()
        b = make_selector(name, budget=0.5, random_state=7, **kw).fit(t).get_support()
        assert (a == b).all()

    def test_stratified_quota(self, name, kw):
        t = table(n=60)
        sel = make_selector(name, budget=0.5, stratify_by="aspect", **kw).fit(t)
        if name == "full":
            return
        kept = t[sel.get_support()]["aspect"].value_counts()
        counts = t["aspect"].value_counts()
        for a in counts.index:
            assert abs(kept.get(a, 0) - counts[a] * 0.5) <= 1


def test_pd_keeps_most_negative_and_ties_by_pair_id():
    t = pd.DataFrame({"pair_id": ["b", "a", "c", "d"], "aspect": "x", "pd": [0.0, 0.0, -1, 5]})
    sel = make_selector("pd", budget_count=2).fit(t)
    assert t["pair_id"][sel.get_support()].tolist() == ["a", "c"]  # -1 first, then tie -> "a"
    high = make_selector("pd_high", budget_count=2).fit(t)
    assert sorted(t["pair_id"][high.get_support()]) == ["a", "d"]


def test_nan_keys_rank_last():
    t = pd.DataFrame({"pair_id": list("abc"), "aspect": "x", "pd": [np.nan, 1.0, 2.0]})
    assert make_selector("pd", budget_count=2).fit(t).get_support().tolist() == [False, True, True]


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), None])
def test_bad_budget_fraction(bad):
    with pytest.raises(ConfigError, match="select.budget"):
        budget_size(10, bad)


@pytest.mark.parametrize("bad,match", [(0, "positive"), (11, "exceeds the 10"), (2.5, "positive")])
def test_bad_budget_count(bad, match):
    with pytest.raises(ConfigError, match=match):
        budget_size(10, 0.3, bad)


def test_budget_edges():
    assert budget_size(10, 0.3) == 3  # no float round-up to 4
    assert budget_size(10, 1.0) == 10
    assert budget_size(10, 0.01) == 1
    assert budget_size(10, 0.3, 1) == 1 and budget_size(10, 0.3, 10) == 10


def test_missing_score_column_is_a_clear_error():
    t = pd.DataFrame({"pair_id": ["a"], "aspect": ["x"]})
    with pytest.raises(ConfigError, match="needs a 'margin' column"):
        make_selector("margin").fit(t)


def test_unknown_selector_hint():
    with pytest.raises(ConfigError, match="did you mean 'pd_high'"):
        make_selector("pd_hihg")


def test_apportion():
    assert apportion(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]  # 2.5,1.5,1.0 -> LR
    assert apportion(np.array([1, 100]), 50).sum() == 50
    assert apportion(np.array([0, 0]), 0).tolist() == [0, 0]


keys = st.lists(st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1)), min_size=1,
                max_size=60)


@settings(max_examples=60, deadline=None)
@given(keys, st.floats(0.01, 1.0), st.sampled_from(["pd", "pd_high", "margin", "random"]))
def test_properties_budget_exact_and_monotone(vals, frac, name):
    t = pd.DataFrame({"pair_id": [f"p{i}" for i in range(len(vals))], "aspect": "a",
                      "pd": vals, "margin": vals})
    small = make_selector(name, budget=frac / 2 if frac / 2 > 0 else frac, random_state=0).fit(t)
    big = make_selector(name, budget=frac, random_state=0).fit(t)
    assert big.get_support().sum() == budget_size(len(t), frac)
    # monotone in the budget: a larger budget keeps a superset
    assert not (small.get_support() & ~big.get_support()).any()


@settings(max_examples=40, deadline=None)
@given(keys)
def test_property_pd_selection_is_a_threshold(vals):
    t = pd.DataFrame({"pair_id": [f"p{i}" for i in range(len(vals))], "aspect": "a", "pd": vals})
    m = make_selector("pd", budget=0.5).fit(t).get_support()
    if m.all():
        return
    assert t["pd"][m].max() <= t["pd"][~m].min()


@pytest.mark.parametrize("stratify", [None, "aspect"])
@pytest.mark.parametrize("method", ["pd", "pd_high", "random", "margin"])
def test_rank_and_boundary_support_agree(method, stratify):
    """The support comes from the budget boundary, the rank column from the full sort: the
    first n rows of the rank (per group when stratified) are exactly the support, with ties
    and NaN keys present."""
    rng = np.random.default_rng(3)
    n = 500
    df = pd.DataFrame({"pair_id": [f"p{i:04d}" for i in rng.permutation(n)],
                       "aspect": rng.choice(["a", "b", "c"], n),
                       "pd": np.round(rng.normal(size=n), 1),      # many ties
                       "margin": rng.normal(size=n)})
    df.loc[rng.choice(n, 20, replace=False), ["pd", "margin"]] = np.nan
    sel = make_selector(method, budget=0.3, stratify_by=stratify, random_state=1).fit(df)
    mask = sel.get_support()
    if stratify is None:
        expect = np.zeros(n, bool)
        expect[sel.order_[:sel.n_select_]] = True
    else:
        expect, at = np.zeros(n, bool), 0
        for g in sorted(sel.quota_):
            rows = sel.order_[at: at + int((df["aspect"] == g).sum())]
            expect[rows[:sel.quota_[g]]] = True
            at += len(rows)
    np.testing.assert_array_equal(mask, expect)
    assert mask.sum() == sel.n_select_
