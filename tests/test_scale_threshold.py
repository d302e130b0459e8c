"""Threshold selection (no global sort) == the selectors' exact rank order, ties included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdselect.errors import ConfigError
from pdselect.select.threshold import find_boundary, select_parts, threshold_support
from pdselect.select.selectors import make_selector

KEYS = [-1.0, -0.5, -0.0, 0.0, 0.5, 1.0, np.nan]


@st.composite
def score_tables(draw):
    n = draw(st.integers(1, 60))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    asp = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    as_str = draw(st.booleans())
    pid = [f"z{i}" for i in ids] if as_str else ids   # int ids rank as strings too
    return pd.DataFrame({"pair_id": pid, "pd": keys, "margin": keys[::-1], "aspect": asp})


@settings(max_examples=300, deadline=None)
@given(score_tables(), st.integers(1, 60), st.sampled_from(["pd", "pd_high", "margin"]),
       st.booleans())
def test_threshold_equals_selector(df, count, method, stratify):
    count = min(count, len(df))
    sel = make_selector(method, budget_count=count,
                        stratify_by="aspect" if stratify else None).fit(df)
    key = "margin" if method == "margin" else "pd"
    got = threshold_support(df[key], df["pair_id"], count, descending=sel.descending,
                            groups=df["aspect"] if stratify else None)
    np.testing.assert_array_equal(got, sel.get_support())


def test_boundary_worked_example():
    k = np.array([3.0, 1.0, 2.0, 2.0, np.nan, 2.0])
    b = find_boundary(k, 3)
    assert (b.threshold, b.n_below, b.n_ties) == (2.0, 1, 2)
    mask = threshold_support(k, ["f", "e", "d", "c", "b", "a"], 3)
    # key 1 (e) outright; among the three 2.0 ties the smallest ids a, c
    assert mask.tolist() == [False, True, False, True, False, True]
    nan_b = find_boundary(k, 6)
    assert np.isnan(nan_b.threshold) and nan_b.n_ties == 1


@settings(max_examples=40, deadline=None)
@given(score_tables(), st.sampled_from([0.1, 0.3, 0.5, 1.0]), st.booleans(),
       st.integers(1, 4))
def test_select_parts_on_disk_equals_selector(tmp_path_factory, df, budget, stratify, n_parts):
    d = tmp_path_factory.mktemp("parts")
    df = df.assign(pair_id=df["pair_id"].astype(str))
    for j, chunk in enumerate(np.array_split(np.arange(len(df)), n_parts)):
        pq.write_table(pa.Table.from_pandas(df.iloc[chunk], preserve_index=False),
                       d / f"part-{j:05d}.parquet")
    out = d / "sel"
    summary = select_parts(d, out, "pd", budget=budget,
                           stratify_by="aspect" if stratify else None)
    got = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))],
                    ignore_index=True)
    sel = make_selector("pd", budget=budget, stratify_by="aspect" if stratify else None).fit(df)
    np.testing.assert_array_equal(got["selected"].to_numpy(), sel.get_support())
    assert summary["n_selected"] == sel.n_select_


def test_large_random_many_ties():
    rng = np.random.default_rng(0)
    n = 200_000
    key = rng.integers(-20, 20, n) / 4.0
    key[rng.random(n) < 0.01] = np.nan
    df = pd.DataFrame({"pair_id": [f"p{i}" for i in rng.permutation(n)], "pd": key})
    sel = make_selector("pd", budget=0.3).fit(df)
    np.testing.assert_array_equal(threshold_support(df["pd"], df["pair_id"], sel.n_select_),
                                  sel.get_support())


def test_random_selector_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="random"):
        select_parts(tmp_path, tmp_path / "o", "random")
