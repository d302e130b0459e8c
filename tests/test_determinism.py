"""Determinism by construction: a pair's scores do not depend on batch size, shard size, engine
or the other rows of its batch (beyond a stated tolerance), and the SELECTION is identical.

Floats from different batchings are compared within tolerances, never exactly:
- SCORE_ATOL: the same cached embeddings through different shards / engines (float64 heads);
- COLD_ATOL: embeddings computed from scratch in different encoder batch sizes (float32 noise
  in the encoder, then through retrained proxy heads).
Selections (the kept pair ids) are compared exactly.
"""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pdselect.cli import main
from pdselect.reward.heads import BTHeads, head_rewards

#: the earlier demo: what these tests check is encoder batching and sharding, not the demo
USR = "configs/examples/usr_topical_chat.yaml"
SCORE_ATOL = 1e-9
COLD_ATOL = 1e-4


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("det") / "ref"
    assert main(["-q", "run", "-c", USR, f"run_dir={run}"]) == 0
    return run


def _scores(run):
    return pd.read_parquet(run / "score" / "scores.parquet").sort_values("pair_id") \
        .reset_index(drop=True)


def _kept(run):
    sel = pd.read_parquet(run / "select" / "selection.parquet")
    return sorted(sel.loc[sel["selected"], "pair_id"])


def _assert_same(ref, other, atol):
    a, b = _scores(ref), _scores(other)
    assert list(a["pair_id"]) == list(b["pair_id"])
    for c in a.columns:
        if a[c].dtype.kind == "f":
            np.testing.assert_allclose(b[c], a[c], rtol=0, atol=atol, err_msg=c)
    assert _kept(other) == _kept(ref)


@pytest.mark.parametrize("heads", ["linear", "mlp"])
def test_head_rewards_of_a_row_do_not_depend_on_its_batch(heads):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 48)).astype(np.float32)
    model = BTHeads(5, 48, heads, hidden=16, seed=1)
    if heads == "linear":
        with torch.no_grad():
            model.w.normal_(generator=torch.Generator().manual_seed(2))
    full = head_rewards(model, X)
    assert full.dtype == np.float64
    for rows in ([7], [0, 2999], list(range(5, 1029)), list(range(1000, 3000, 3))):
        np.testing.assert_allclose(head_rewards(model, X[rows]), full[rows], rtol=0, atol=1e-12)


@pytest.mark.parametrize("shard_size", [37, 100, 1000])
def test_shard_sizes_give_the_same_scores_and_selection(ref_run, tmp_path, shard_size):
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    over = [f"run_dir={run}", f"score.shard_size={shard_size}"]
    assert main(["-q", "score", "-c", USR, "--force"] + over) == 0
    assert main(["-q", "select", "-c", USR] + over) == 0
    _assert_same(ref_run, run, SCORE_ATOL)


def test_ray_engine_gives_the_same_scores_and_selection(ref_run, tmp_path):
    pytest.importorskip("ray", reason="ray[data] not installed")
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    over = [f"run_dir={run}", "score.shard_size=150", "score.engine=ray"]
    try:
        assert main(["-q", "score", "-c", USR, "--force"] + over) == 0
    finally:
        import ray

        ray.shutdown()
    assert main(["-q", "select", "-c", USR] + over) == 0
    _assert_same(ref_run, run, SCORE_ATOL)


@pytest.mark.parametrize("batch_size", [5, 33])
def test_cold_cache_encoder_batch_sizes_give_the_same_selection(ref_run, tmp_path, batch_size):
    """Embeddings computed from scratch in other encoder batches (float32 noise), then proxies
    retrained on them: scores agree within COLD_ATOL and the selection is identical."""
    run = tmp_path / "run"
    over = [f"run_dir={run}", f"proxy.batch_size={batch_size}",
            f"proxy.cache_dir={tmp_path / 'cache'}"]
    assert main(["-q", "run", "-c", USR] + over) == 0
    _assert_same(ref_run, run, COLD_ATOL)
