"""Aggregation: pairs, one label each, orientation, hidden columns, split, conflict level."""

import numpy as np
import pandas as pd
import pytest

from pdselect.aggregate.pairs import (aggregate, apply_conflict_level, build_pairs, pair_id,
                                split_by_input)
from pdselect.config import AggregateConfig
from pdselect.errors import StageError
from pdselect.data.rejects import RejectLog
from pdselect.data.schema import RatedTable, public_view


def rated(overall=True):
    # input A: 3 responses; input B: 2 responses; input C: 1 response (no pair)
    df = pd.DataFrame({
        "input_id": ["A", "A", "A", "B", "B", "C"],
        "input": ["qa", "qa", "qa", "qb", "qb", "qc"],
        "response_id": ["a1", "a2", "a3", "b1", "b2", "c1"],
        "response": ["x", "yy", "zzz", "u", "vv", "w"],
        "help": [5.0, 3.0, 3.0, 2.0, 2.0, 1.0],
        "honest": [1.0, 2.0, 3.0, 4.0, 4.0, 1.0],
        "overall": [4.0, 2.0, 3.0, 1.0, 1.0, 1.0],
    })
    return RatedTable(df, ["help", "honest"], {"help": (1, 5), "honest": (1, 5)},
                      has_overall=overall, source="toy")


def test_pairs_labels_and_orientation():
    rej = RejectLog("aggregate")
    p = build_pairs(rated(), AggregateConfig(label_strategy="max_margin"), 0, rej)
    # A gives 3 pairs; B's only pair is tied on every aspect; C has a single response
    assert len(p) == 3
    assert rej.counts() == {"input has a single response (no pair can be formed)": 1,
                            "pair tied (or unrated) on every aspect: no aspect label possible": 1}
    row = p.set_index("pair_id").loc[pair_id("A", "a1", "a2")]
    # a1 vs a2: help +2, honest -1 -> max_margin picks help, y_w = a1
    assert row["aspect"] == "help" and row["chosen_id"] == "a1" and row["rejected"] == "yy"
    assert row["h_delta__honest"] == -1.0 and row["h_overall_delta"] == 2.0
    assert row["h_agrees_overall"] == 1.0
    row = p.set_index("pair_id").loc[pair_id("A", "a2", "a3")]
    # a2 vs a3: help tied -> only honest decides, y_w = a3; overall prefers a3 too
    assert row["aspect"] == "honest" and row["chosen_id"] == "a3"
    row = p.set_index("pair_id").loc[pair_id("A", "a1", "a3")]
    assert row["aspect"] == "help" and row["chosen_id"] == "a1"


def test_every_label_is_a_deciding_aspect_and_chosen_wins_it():
    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"input_id": np.repeat([f"i{k}" for k in range(15)], 4),
                       "input": "q", "response_id": [f"r{k}" for k in range(n)],
                       "response": ["t" * (k % 7 + 1) for k in range(n)],
                       **{a: rng.integers(1, 6, n).astype(float) for a in "abc"}})
    rt = RatedTable(df, list("abc"), {a: (1, 5) for a in "abc"}, False, "toy")
    for strategy in ("uniform", "max_margin", "balanced"):
        p = build_pairs(rt, AggregateConfig(label_strategy=strategy), 1, RejectLog("x"))
        gap = np.array([p.loc[i, f"h_delta__{p.loc[i, 'aspect']}"] for i in p.index])
        assert (gap > 0).all(), strategy


def test_uniform_labels_are_seeded():
    cfg = AggregateConfig()
    a = build_pairs(rated(), cfg, 3, RejectLog("x"))["aspect"].tolist()
    b = build_pairs(rated(), cfg, 3, RejectLog("x"))["aspect"].tolist()
    assert a == b


def test_overall_from_mean_of_rescaled_aspects_when_missing():
    p = build_pairs(rated(overall=False), AggregateConfig(label_strategy="max_margin"), 0,
                    RejectLog("x"))
    row = p.set_index("pair_id").loc[pair_id("A", "a1", "a2")]
    # mean of (help-1)/4 and (honest-1)/4: a1 = (1 + 0)/2, a2 = (0.5 + 0.25)/2
    assert row["h_overall_delta"] == pytest.approx(0.5 - 0.375)


def test_split_is_by_input():
    p = pd.DataFrame({"pair_id": [f"p{i}" for i in range(40)],
                      "input_id": [f"i{i // 4}" for i in range(40)], "split": "train"})
    s = split_by_input(p, 0.3, seed=0)
    per_input = s.groupby("input_id")["split"].nunique()
    assert (per_input == 1).all()
    assert s.groupby("split")["input_id"].nunique()["test"] == 3


def test_conflict_level_hits_target_on_train_only():
    n = 200
    ag = np.r_[np.ones(150), np.zeros(40), np.full(10, np.nan)]
    p = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "split": "train",
                      "h_agrees_overall": ag})
    p.loc[:9, "split"] = "test"
    rej = RejectLog("aggregate")
    out = apply_conflict_level(p, 0.1, 0, rej)
    tr = out[out["split"] == "train"]["h_agrees_overall"].dropna()
    assert (1 - tr.mean()) == pytest.approx(0.1, abs=0.005)
    assert (out["split"] == "test").sum() == 10  # test pairs untouched
    assert rej.total == n - len(out)
    up = apply_conflict_level(p, 0.3, 0, RejectLog("x"))
    tr = up[up["split"] == "train"]["h_agrees_overall"].dropna()
    assert (1 - tr.mean()) == pytest.approx(0.3, abs=0.005)


def test_aspect_with_too_few_pairs_stops_with_its_name():
    with pytest.raises(StageError, match="honest"):
        aggregate(rated(), AggregateConfig(min_pairs_per_aspect=2, test_fraction=0.0,
                                           label_strategy="max_margin"), 0, RejectLog("x"))


def test_public_view_hides_oracle_columns():
    p = build_pairs(rated(), AggregateConfig(), 0, RejectLog("x"))
    assert any(c.startswith("h_") for c in p.columns)
    assert not any(c.startswith("h_") for c in public_view(p).columns)


def test_row_order_of_the_input_does_not_change_pairs():
    # regression: the overall column was once read in the unsorted order
    base = rated()
    shuffled = RatedTable(base.df.iloc[[4, 2, 5, 0, 3, 1]].reset_index(drop=True), base.aspects,
                          base.scales, True, "toy")
    cfg = AggregateConfig(label_strategy="max_margin")
    a = build_pairs(base, cfg, 0, RejectLog("x")).sort_values("pair_id").reset_index(drop=True)
    b = build_pairs(shuffled, cfg, 0, RejectLog("x")).sort_values("pair_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_aspect_with_zero_pairs_is_an_error_not_silently_dropped():
    r = rated()
    r.df["never"] = 3.0  # rated, but decides no pair
    r.aspects.append("never")
    r.scales["never"] = (1, 5)
    with pytest.raises(StageError, match="'never': 0"):
        aggregate(r, AggregateConfig(min_pairs_per_aspect=1, test_fraction=0.0), 0, RejectLog("x"))
