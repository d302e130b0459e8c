"""Selection rules beyond the budget (issue 18 item 2): threshold, minimum margin, and/or of two
selectors, the length baseline, IRG in the pipeline. Each against a selection computed by hand
on a small table, streamed == in memory for any shard size, and the config's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdselect.config import load_config
from pdselect.errors import ConfigError
from pdselect.select.selectors import make_selector
from pdselect.select.threshold import select_parts

#          pair   pd     margin  len_chosen len_rejected aspect
ROWS = [("p1", -0.8, 0.9, 120, 100, "a"),
        ("p2", -0.2, 0.1, 50, 200, "a"),
        ("p3", 0.0, 0.6, 300, 100, "b"),
        ("p4", 0.0, 0.5, 80, 80, "b"),
        ("p5", 0.4, 0.7, 90, 40, "a"),
        ("p6", np.nan, 0.95, 100, 100, "b")]


def small() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["pair_id", "pd", "margin", "len_chosen", "len_rejected",
                                       "aspect"])


def kept(method: str, **kw) -> list[str]:
    t = small()
    return sorted(t["pair_id"][make_selector(method, **kw).fit(t).get_support()])


# ----------------------------------------------------------------------------- by hand
def test_pd_threshold_by_hand():
    # pd <= 0: p1, p2, p3, p4 (NaN never passes); budget 1.0 = no cap
    assert kept("pd", budget=1.0, threshold=0.0) == ["p1", "p2", "p3", "p4"]
    # capped by the budget: 3 of 6 -> the three smallest pd: p1, p2, then the tie p3/p4 -> p3
    assert kept("pd", budget=0.5, threshold=0.0) == ["p1", "p2", "p3"]
    # a threshold below every pd keeps nothing; the selector still fits
    sel = make_selector("pd", budget=1.0, threshold=-5.0).fit(small())
    assert sel.n_select_ == 0 and sel.n_budget_ == 6


def test_min_margin_by_hand():
    # margin >= 0.6: p1 0.9, p3 0.6, p5 0.7, p6 0.95
    assert kept("margin", budget=1.0, threshold=0.6) == ["p1", "p3", "p5", "p6"]
    assert kept("margin", budget_count=2, threshold=0.6) == ["p1", "p6"]


def test_length_baseline_by_hand():
    # len_chosen - len_rejected: p1 20, p2 -150, p3 200, p4 0, p5 50, p6 0 -> largest first
    assert kept("length", budget_count=2) == ["p3", "p5"]
    # ties at 0 (p4, p6) broken by pair id
    assert kept("length", budget_count=4) == ["p1", "p3", "p4", "p5"]


def test_combine_by_hand():
    # pd top 3 = p1, p2, p3; margin top 3 = p6, p1, p5
    assert kept("combine", op="and", methods=["pd", "margin"], budget_count=3) == ["p1"]
    assert kept("combine", op="or", methods=["pd", "margin"], budget_count=3) == \
        ["p1", "p2", "p3", "p5", "p6"]
    # each member keeps its own threshold: pd <= 0 (p1-p4) and margin >= 0.5 (p1 p3 p4 p5 p6)
    assert kept("combine", op="and", methods=["pd", "margin"], budget=1.0,
                thresholds={"pd": 0.0, "margin": 0.5}) == ["p1", "p3", "p4"]


def test_combine_rank_puts_kept_first_in_the_first_methods_order():
    t = small()
    sel = make_selector("combine", op="or", methods=["pd", "margin"], budget_count=3).fit(t)
    order = t["pair_id"].to_numpy()[sel.order_].tolist()
    # kept in pd order (NaN last): p1 p2 p3 p5 p6; then the rest in pd order: p4
    assert order == ["p1", "p2", "p3", "p5", "p6", "p4"]


def test_stratified_threshold_caps_each_group():
    # budget 4 over a (3 pairs) and b (3 pairs): quota 2 + 2; pd <= 0 leaves a: p1 p2, b: p3 p4
    assert kept("pd", budget_count=4, threshold=0.0, stratify_by="aspect") == \
        ["p1", "p2", "p3", "p4"]
    # pd <= -0.5: a keeps p1 only, b none
    assert kept("pd", budget_count=4, threshold=-0.5, stratify_by="aspect") == ["p1"]


def test_threshold_refused_on_a_selector_without_a_key():
    with pytest.raises(ConfigError, match="takes no threshold"):
        make_selector("random", threshold=0.0).fit(small())


def test_length_without_lengths_is_a_clear_error():
    with pytest.raises(ConfigError, match="len_chosen"):
        make_selector("length").fit(small().drop(columns=["len_chosen"]))


# ----------------------------------------------------------------------------- streamed
@st.composite
def tables(draw):
    n = draw(st.integers(2, 50))
    vals = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, np.nan])
    pd_ = draw(st.lists(vals, min_size=n, max_size=n))
    mg = draw(st.lists(vals, min_size=n, max_size=n))
    lc = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    return pd.DataFrame({"pair_id": [f"z{i}" for i in ids], "pd": pd_, "margin": mg,
                         "len_chosen": lc, "len_rejected": lc[::-1],
                         "aspect": draw(st.lists(st.sampled_from("abc"), min_size=n,
                                                 max_size=n))})


RULES = [("pd", {"threshold": 0.0}, None), ("margin", {"threshold": 0.5}, None),
         ("length", {}, None),
         ("combine", {"op": "and", "methods": ["pd", "margin"], "thresholds": {"pd": 0.0}},
          {"op": "and", "methods": ["pd", "margin"], "thresholds": {"pd": 0.0}}),
         ("combine", {"op": "or", "methods": ["length", "margin"]},
          {"op": "or", "methods": ["length", "margin"]})]


@settings(max_examples=60, deadline=None)
@given(tables(), st.sampled_from([0.2, 0.5, 1.0]), st.booleans(), st.integers(0, len(RULES) - 1))
def test_streamed_rules_equal_the_selectors_for_any_shard_size(tmp_path_factory, df, budget,
                                                               stratify, which):
    method, kw, combine = RULES[which]
    strat = "aspect" if stratify else None
    want = make_selector(method, budget=budget, stratify_by=strat, **kw).fit(df).get_support()
    for n_parts in (1, 3, len(df)):
        d = tmp_path_factory.mktemp("parts")
        for j, rows in enumerate(np.array_split(np.arange(len(df)), n_parts)):
            pq.write_table(pa.Table.from_pandas(df.iloc[rows], preserve_index=False),
                           d / f"part-{j:05d}.parquet")
        summary = select_parts(d, d / "sel", method, budget=budget, stratify_by=strat,
                               threshold=kw.get("threshold"), combine=combine)
        got = pd.concat([pd.read_parquet(p) for p in sorted((d / "sel").glob("part-*"))])
        np.testing.assert_array_equal(got["selected"].to_numpy(), want)
        assert summary["n_selected"] == int(want.sum())


# ----------------------------------------------------------------------------- config
def _cfg(*over):
    return load_config(None, ["data.source=usr_topical_chat", *over])


@pytest.mark.parametrize("over,match", [
    (["select.pd_threshold=0"], None),
    (["select.method=margin", "select.min_margin=0.2"], None),
    (["select.method=combine", "select.combine={op: and, methods: [pd, margin]}"], None),
    (["select.method=length"], None),
    (["select.method=margin", "select.pd_threshold=0"], "pd selector does not run"),
    (["select.min_margin=0.1"], "margin selector does not run"),
    (["select.combine={op: and, methods: [pd, margin]}"], "select.method=combine"),
    (["select.method=combine", "select.combine={op: xor, methods: [pd, margin]}"], "op"),
    (["select.method=combine", "select.combine={op: or, methods: [pd, lenght]}"], "length"),
    (["select.method=irg", "align.policy="], "align.policy"),
])
def test_config_rules(over, match):
    if match is None:
        _cfg(*over)
    else:
        with pytest.raises(ConfigError, match=match):
            _cfg(*over)


def test_length_is_a_default_compared_selector():
    assert "length" in _cfg().select.compare


# ----------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def rules_run(tmp_path_factory):
    from test_dataset_card import overall_overrides, write_tiny_overall

    from pdselect.align.policy import tiny_llama
    from pdselect.pipeline import run_pipeline

    d = tmp_path_factory.mktemp("rules")
    data = write_tiny_overall(d / "data.jsonl")
    over = overall_overrides(data, d / "run", f"align.policy={tiny_llama(d / 'tiny')}",
                             "align.max_steps=2", "align.batch_size=2", "align.max_length=96")
    return run_pipeline(load_config(None, over)), over, d


def _variant(rules_run, tmp_path, *extra):
    import shutil

    from pdselect.pipeline import run_pipeline

    root, over, _ = rules_run
    dst = tmp_path / "v"
    shutil.copytree(root, dst)
    over = [o for o in over if not o.startswith("run_dir=")] + [f"run_dir={dst}", *extra]
    return run_pipeline(load_config(None, over))


def test_report_compares_the_length_baseline(rules_run):
    import json

    report = json.loads((rules_run[0] / "report.json").read_text())
    comp = report["selection"]["comparison"]
    assert "length" in comp and comp["length"]["n_selected"] == comp["pd"]["n_selected"]
    sel = pd.read_parquet(rules_run[0] / "select" / "selection.parquet")
    assert "len_gap" in sel.columns  # the length key travels with the selection table


def test_pipeline_threshold_rule_keeps_pd_at_most_t(rules_run, tmp_path):
    import json

    root = _variant(rules_run, tmp_path, "select.pd_threshold=0", "select.budget=1.0")
    sel = pd.read_parquet(root / "select" / "selection.parquet")
    assert sel["selected"].tolist() == (sel["pd"] <= 0).tolist()
    meta = json.loads((root / "select" / "meta.json").read_text())
    assert meta["n_selected"] == int((sel["pd"] <= 0).sum()) < meta["n_budget"]


def test_pipeline_irg_keeps_the_smallest_implicit_reward_gaps(rules_run, tmp_path):
    root = _variant(rules_run, tmp_path, "select.method=irg")
    sel = pd.read_parquet(root / "select" / "selection.parquet")
    assert (root / "select" / "irg" / "model").is_dir()  # the ALL policy trained first
    assert sel["irg_gap"].notna().all() and sel["selected"].sum() == np.ceil(0.3 * len(sel))
    assert sel.loc[sel["selected"], "irg_gap"].max() <= sel.loc[~sel["selected"], "irg_gap"].min()


def test_pipeline_irg_with_a_policy_that_does_not_load_is_a_clear_error(rules_run, tmp_path):
    with pytest.raises(ConfigError, match="irg could not load"):
        _variant(rules_run, tmp_path, "select.method=irg", "select.irg_policy=/no/such/model")
