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


def select_inputs(tmp_path, n=300, seed=0):
    """A pair file (train and test rows, several row groups), its score pool and a selection
    whose rank is unrelated to the file order (as after a real sort on PD)."""
    from pdselect.select.selectors import make_selector

    rng = np.random.default_rng(seed)
    pairs = pd.DataFrame({
        "pair_id": [f"p{i:04d}" for i in rng.permutation(n)], "input_id": rng.choice(
            [f"in{i}" for i in range(40)], n), "input": [f"prompt {i}" for i in range(n)],
        "chosen": [f"good {i} " * int(rng.integers(1, 4)) for i in range(n)],
        "rejected": [f"bad {i}" for i in range(n)], "aspect": rng.choice(ASPECTS, n),
        "split": rng.choice(["train", "test"], n, p=[0.8, 0.2])})
    pairs["len_chosen"], pairs["len_rejected"] = pairs["chosen"].str.len(), pairs["rejected"].str.len()
    path = tmp_path / "pairs.parquet"
    pairs.to_parquet(path, index=False, row_group_size=37)
    train = pairs[pairs["split"] == "train"].reset_index(drop=True)
    pool = train[["pair_id", "aspect"]].assign(
        pd=np.round(rng.normal(size=len(train)), 1),  # ties, broken by the selector's rule
        **{f"gap__{a}": rng.normal(size=len(train)) for a in ASPECTS},
        **{f"norm__{a}": rng.uniform(-1, 1, len(train)) for a in ASPECTS})
    sel = make_selector("pd", budget=0.3, stratify_by="aspect", random_state=0).fit(pool)
    rank = np.empty(len(pool), np.int64)
    rank[sel.order_] = np.arange(len(pool))
    selection = pd.DataFrame({"pair_id": pool["pair_id"], "selected": sel.get_support(),
                              "rank": rank})
    return path, train, pool, selection


@pytest.mark.parametrize("fmt", [("standard", "parquet"), ("conversational", "parquet"),
                                 ("standard", "jsonl")])
@pytest.mark.parametrize("shard_size", [1, 7, 50, 100_000])
def test_select_outputs_in_buckets_equal_the_in_memory_tables(tmp_path, fmt, shard_size):
    from pdselect.select.dpo_data import read_pairs
    from pdselect.select.export import TEXT_COLUMNS, inspect_table, trl_table
    from pdselect.select.rank_buckets import write_select_outputs

    path, train, pool, selection = select_inputs(tmp_path)
    want = inspect_table(train.drop(columns="split"), pool, selection)
    got = write_select_outputs(path, pool, selection, tmp_path / "select", *fmt, shard_size)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "select" / "inspect.parquet"), want)
    pd.testing.assert_frame_equal(got["inspect"], want.drop(columns=TEXT_COLUMNS))
    assert not (tmp_path / "select" / "_buckets").exists()
    assert got["data_file"].parent == tmp_path / "select" / "dpo"
    assert sorted(f.name for f in (tmp_path / "select").iterdir()) == ["dpo", "inspect.parquet"]
    assert [f.name for f in got["data_file"].parent.iterdir()] == [got["data_file"].name]
    trl = trl_table(want, fmt[0])
    assert len(trl) == selection["selected"].sum() and 0 < len(trl) < len(want)
    if fmt[1] == "parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(got["data_file"]), trl)
    else:
        back = read_pairs(got["data_file"])
        assert back["pair_id"].tolist() == trl["pair_id"].tolist()
        assert back["chosen"].tolist() == trl["chosen"].tolist()
        np.testing.assert_allclose(back["pd"], trl["pd"], rtol=1e-12)


def test_bucket_width_caps_the_open_files():
    from pdselect.select.rank_buckets import MAX_BUCKETS, bucket_width

    assert bucket_width(1000, 100) == 100  # S ranks per bucket: 10 files
    assert bucket_width(10**6, 100) == -(-10**6 // MAX_BUCKETS)  # widened: at most 256 files
    assert -(-10**6 // bucket_width(10**6, 100)) <= MAX_BUCKETS


def test_select_outputs_refuse_a_pool_the_pair_file_lacks(tmp_path):
    from pdselect.errors import StageError
    from pdselect.select.rank_buckets import write_select_outputs

    path, _, pool, selection = select_inputs(tmp_path)
    ghost = pool.iloc[:1].assign(pair_id="not-in-the-file")
    pool2 = pd.concat([pool, ghost], ignore_index=True)
    sel2 = pd.concat([selection, selection.iloc[:1].assign(
        pair_id="not-in-the-file", rank=len(selection))], ignore_index=True)
    with pytest.raises(StageError, match=r"of the \d+ scored pool pairs found"):
        write_select_outputs(path, pool2, sel2, tmp_path / "select", shard_size=10)
    assert not (tmp_path / "select" / "inspect.parquet").exists()
    assert not list((tmp_path / "select").glob("_buckets/*"))


SPILL_CASES = [  # (source, path or "" for the bundled copy, extra DataConfig fields)
    ("summeval_op", "", {}),
    ("usr_topical_chat", "", {}),
    ("ultrafeedback", "tests/fixtures/ultrafeedback_sample.jsonl", {}),
    ("mqm_ted_zhen", "", {"max_rows": 3000}),
    ("helpsteer2", "tests/fixtures/helpsteer2_sample.jsonl", {}),  # keeps its texts
]


@pytest.mark.parametrize("source,path,extra", SPILL_CASES)
def test_readers_spill_the_table_they_would_return(tmp_path, monkeypatch, source, path, extra):
    import pdselect.data.rows as rows
    from pdselect.config import DataConfig
    from pdselect.data import read_source

    cfg = DataConfig(source=source, path=path, **extra)
    want_rej = RejectLog("ingest")
    want = read_source(cfg, want_rej)
    monkeypatch.setattr(rows, "SPILL_ROWS", 7)  # many row groups even on small data
    rej = RejectLog("ingest")
    got = read_source(cfg, rej, spill_to=tmp_path / "rated.parquet")
    assert rej.items == want_rej.items
    assert (got.aspects, got.scales, got.has_overall) == (want.aspects, want.scales,
                                                         want.has_overall)
    if source == "helpsteer2":
        assert got.path is None and not (tmp_path / "rated.parquet").exists()
        pd.testing.assert_frame_equal(got.df, want.df)
        return
    assert got.path == tmp_path / "rated.parquet"
    assert pq.ParquetFile(got.path).num_row_groups == -(-len(want.df) // 7)
    pd.testing.assert_frame_equal(pd.read_parquet(got.path), want.df)
    assert "response" not in got.df.columns and "input" not in got.df.columns
    pd.testing.assert_frame_equal(got.df, want.df.drop(columns=["input", "response"]))
    assert [f.name for f in tmp_path.iterdir()] == ["rated.parquet"]  # no temporary left


def test_a_reader_failing_midway_leaves_no_spill_file(tmp_path, monkeypatch):
    import pdselect.data.rows as rows
    from pdselect.config import DataConfig
    from pdselect.data import read_source
    from pdselect.errors import InputError

    lines = [{"input": f"q{i}", "response": f"a{i}", "x": 1} for i in range(30)]
    lines.append({"input": "q", "response": "bad", "x": "not a number"})
    data = tmp_path / "d.jsonl"
    pd.DataFrame(lines).to_json(data, orient="records", lines=True)
    monkeypatch.setattr(rows, "SPILL_ROWS", 4)
    with pytest.raises(InputError, match="not a number"):
        read_source(DataConfig(source="generic", path=str(data), aspects=["x"], strict=True),
                    RejectLog("ingest"), spill_to=tmp_path / "out" / "rated.parquet")
    assert (tmp_path / "out").is_dir()  # batches were written before the bad line ...
    assert list((tmp_path / "out").iterdir()) == []  # ... and removed with the failure


def test_ingest_stage_averages_identical_texts_across_spilled_batches(tmp_path, monkeypatch):
    """The repeat rule sees every batch: a text repeated after a spill is still caught."""
    import pdselect.data.rows as rows
    from pdselect.config import DataConfig
    from pdselect.data import read_source

    lines = [{"input": "q", "response": f"a{i}", "x": 1} for i in range(10)]
    lines.append({"input": "q", "response": "  a0 ", "x": 2})  # a0 again, long after a spill
    data = tmp_path / "d.jsonl"
    pd.DataFrame(lines).to_json(data, orient="records", lines=True)
    monkeypatch.setattr(rows, "SPILL_ROWS", 3)
    rej = RejectLog("ingest")
    got = read_source(DataConfig(source="generic", path=str(data), aspects=["x"],
                                 scales={"x": [1, 5]}), rej,
                      spill_to=tmp_path / "rated.parquet")
    assert len(got.df) == 10
    # issue 17: a repeated text's ratings are averaged into the first row (generic source),
    # also when that row was already spilled: the file and the id-only frame agree
    assert rej.counts() == {"response rated on several rows per aspect: ratings averaged "
                            "(kept, not dropped)": 1}
    on_disk = pd.read_parquet(tmp_path / "rated.parquet").set_index("response")
    assert on_disk.loc["a0", "x"] == 1.5 and on_disk.loc["a1", "x"] == 1
    assert got.df.set_index("response_id").loc[on_disk.loc["a0", "response_id"], "x"] == 1.5
