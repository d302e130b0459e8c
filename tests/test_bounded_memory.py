"""Bounded-memory stages give the same results as the one-shot ones (small N)."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pdselect.aggregate.pairs import aggregate
from pdselect.aggregate.stream import input_chunks, plan_rated
from pdselect.config import AggregateConfig
from pdselect.data.rejects import RejectLog
from pdselect.data.schema import RatedTable
from pdselect.run.artifacts import write_parquet

ASPECTS = ["a", "b", "c"]


def rated_df(n_inputs=40, seed=0):
    """Inputs with 1-5 responses (so pair order by input size matters), ratings with ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in rng.permutation(n_inputs):  # file order is not id order
        for r in range(int(rng.integers(1, 6))):
            rows.append({"input_id": f"in{i:03d}", "input": f"question {i}",
                         "response_id": f"in{i:03d}:{r}", "response": f"answer {i}.{r}",
                         **{a: float(rng.integers(1, 4)) for a in ASPECTS},
                         "overall": float(rng.integers(1, 6))})
    return pd.DataFrame(rows)


def meta(has_overall=True, scales=True):
    return {"aspects": ASPECTS, "scales": {a: [1, 3] for a in ASPECTS} if scales else {},
            "has_overall": has_overall, "source": "toy"}


def one_shot(df, m, cfg, seed):
    rej = RejectLog("aggregate")
    rt = RatedTable(df, m["aspects"], {a: tuple(v) for a, v in m["scales"].items()},
                    m["has_overall"], m["source"])
    return aggregate(rt, cfg, seed, rej), rej


def chunked(df, m, cfg, seed, tmp_path, chunk_inputs):
    path = tmp_path / "rated.parquet"
    df.to_parquet(path, index=False)
    rej = RejectLog("aggregate")
    plan = plan_rated(path, m, cfg, seed, rej, tmp_path / "_parts", chunk_inputs=chunk_inputs)
    plan.write(tmp_path / "pairs.parquet")
    assert not (tmp_path / "_parts").exists()  # the parts are removed once copied
    return pd.read_parquet(tmp_path / "pairs.parquet"), rej, plan


@pytest.mark.parametrize("cfg", [
    AggregateConfig(min_pairs_per_aspect=1),
    AggregateConfig(label_strategy="balanced", max_pairs_per_input=4, min_pairs_per_aspect=1),
    AggregateConfig(label_strategy="max_margin", conflict_level=0.3, test_fraction=0.25,
                    min_pairs_per_aspect=1),
])
@pytest.mark.parametrize("chunk_inputs", [1, 3, 7, 10_000])
def test_chunked_aggregate_equals_one_shot(tmp_path, cfg, chunk_inputs):
    df = rated_df()
    want, want_rej = one_shot(df, meta(), cfg, seed=5)
    got, got_rej, plan = chunked(df, meta(), cfg, 5, tmp_path, chunk_inputs)
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    assert got_rej.items == want_rej.items  # same rejects, same order
    write_parquet(tmp_path / "one_shot.parquet", want)  # the file the one-shot stage wrote
    assert pq.read_schema(tmp_path / "pairs.parquet").remove_metadata() == \
        pq.read_schema(tmp_path / "one_shot.parquet").remove_metadata()
    light = plan.light.reset_index(drop=True)
    pd.testing.assert_frame_equal(light, want[light.columns].reset_index(drop=True))
    assert "chosen" not in light.columns


def test_chunks_follow_build_pairs_order():
    ids = np.array(["b", "a", "a", "c", "c", "c", "d", "b"])
    chunks = input_chunks(ids, 2)
    assert [c.tolist() for c in chunks] == [["d", "a"], ["b", "c"]]  # by size, then id


def test_unscaled_or_ill_formed_tables_fall_back_to_one_chunk(tmp_path):
    df = rated_df(20)
    df.loc[df.index[1], "response"] = df["response"].iloc[0]  # a duplicate text, if same input
    df.loc[df.index[1], "input_id"] = df["input_id"].iloc[0]
    df.loc[df.index[1], "input"] = df["input"].iloc[0]
    cfg = AggregateConfig(min_pairs_per_aspect=1)
    for m in (meta(), meta(has_overall=False, scales=False)):
        want, want_rej = one_shot(df, m, cfg, 1)
        got, got_rej, _ = chunked(df, m, cfg, 1, tmp_path, 2)
        pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
        assert got_rej.items == want_rej.items
    assert "duplicate response text for this input" in want_rej.counts()


def test_proxy_sample_reads_only_the_capped_pairs(tmp_path):
    from pdselect.reward.base import read_train_sample, subsample_per_aspect

    rng = np.random.default_rng(0)
    n = 1000
    pairs = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)],
                          "aspect": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
                          "split": rng.choice(["train", "test"], n, p=[0.7, 0.3]),
                          "chosen": [f"text {i}" for i in range(n)], "h_x": rng.random(n)})
    path = tmp_path / "pairs.parquet"
    pairs.to_parquet(path, index=False, row_group_size=64)  # many row groups
    train = pairs[pairs["split"] == "train"].drop(columns="h_x").reset_index(drop=True)
    # no cap, or a cap no aspect reaches: every train pair, in order (small runs unchanged)
    for cap in (None, 10_000):
        pd.testing.assert_frame_equal(read_train_sample(path, cap, 3), train)
    got = read_train_sample(path, 50, 3)
    counts = got["aspect"].value_counts()
    assert counts.max() == 50 and counts.get("c", 0) == min(50, (train["aspect"] == "c").sum())
    want = train.iloc[subsample_per_aspect(train["aspect"].to_numpy(), 50, 3)]
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    assert not got.equals(read_train_sample(path, 50, 4))  # seeded: another seed, another draw
    assert "h_x" not in got.columns
