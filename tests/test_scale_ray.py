"""score.engine=ray: Ray Data actor pool over Parquet shards == the local engine."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="ray[data] is not installed: engine=ray is untestable "
                                        "here (pip install 'ray[data]')")

from pdselect.score.engine import pd_pass, read_scores, score_sharded  # noqa: E402
from pdselect.score.ray_engine import score_sharded_ray  # noqa: E402
from pdselect.score.testing import HashGaps, HashGapsFactory  # noqa: E402

from test_scale_sharded import ASPECTS, make_pairs, write_shards  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():  # another module's test may have started one (engine=ray)
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_equals_local_and_resumes(tmp_path):
    df = make_pairs(300, seed=5)
    folder = write_shards(df, tmp_path / "in", [120, 180])
    local = tmp_path / "local"
    score_sharded(folder, HashGaps(4), ASPECTS, local, shard_size=50)
    pd_pass(local, ASPECTS, 0.9)

    out = tmp_path / "ray"
    # a local run that died after 2 shards, resumed by the Ray engine
    class Dies:
        calls = 0

        def __call__(self, b):
            Dies.calls += 1
            if Dies.calls > 2:
                raise KeyboardInterrupt
            return HashGaps(4)(b)

    with pytest.raises(KeyboardInterrupt):
        score_sharded(folder, Dies(), ASPECTS, out, shard_size=50)
    s = score_sharded_ray(folder, HashGapsFactory(4), ASPECTS, out, shard_size=50,
                          actors=2)
    assert s["n_shards"] == 6 and s["n_shards_resumed"] == 2 and s["n_shards_scored_now"] == 4
    assert s["n_rows_scored_now"] == len(read_scores_gaps(out)) - len(read_scores_gaps(out, 2))
    pd_pass(out, ASPECTS, 0.9)
    a = read_scores(local).sort_values("pair_id", ignore_index=True)
    b = read_scores(out).sort_values("pair_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def read_scores_gaps(out, first_n=None):
    parts = sorted((out / "scores").glob("part-*.parquet"))[:first_n]
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _local(folder, out, margin=False, shard_size=50):
    score_sharded(folder, HashGaps(4), ASPECTS, out, shard_size=shard_size,
                  margin_fn=HashGaps(1, salt=7) if margin else None)
    pd_pass(out, ASPECTS, 0.9)
    return read_scores(out).sort_values("pair_id", ignore_index=True)


def test_ray_file_uris_margin_and_empty_shard(tmp_path):
    df = make_pairs(200, seed=2)
    df.loc[50:99, "split"] = "test"          # shard 1 has no train row: an empty part
    folder = write_shards(df, tmp_path / "in", [200])
    a = _local(folder, tmp_path / "local", margin=True)
    out = tmp_path / "ray"
    s = score_sharded_ray(f"file://{folder}", HashGapsFactory(4), ASPECTS, f"file://{out}",
                          shard_size=50, actors=2, margin_factory=partial(HashGaps, 1, salt=7),
                          batch_size=16)
    assert s["n_shards_scored_now"] == 4 and s["n_rows_scored_now"] == len(a)
    assert pd.read_parquet(out / "scores" / "part-00001.parquet").empty
    assert not (out / "scores" / "_ray").exists()      # staging cleaned after the commit
    pd_pass(out, ASPECTS, 0.9)
    b = read_scores(f"file://{out}").sort_values("pair_id", ignore_index=True)
    assert "margin" in b.columns
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_ray_resume_commits_complete_staging_and_redoes_partial(tmp_path):
    """A Ray run killed mid-write leaves staged files: a complete shard is committed as it is
    (not scored again), a shard missing rows or with a truncated file is scored again."""
    from pdselect.score.ray_engine import staging_dir

    df = make_pairs(150, seed=3)
    folder = write_shards(df, tmp_path / "in", [150])
    a = _local(folder, tmp_path / "local")
    out = tmp_path / "ray"
    score_sharded_ray(folder, HashGapsFactory(4), ASPECTS, out, shard_size=50, actors=1)
    parts = {i: pd.read_parquet(out / "scores" / f"part-{i:05d}.parquet") for i in range(3)}
    # fake the staging a killed run leaves: shard 0 complete (marked: gaps + 100), shard 1
    # missing its last row, shard 2 with a truncated file
    for i in range(3):
        (out / "scores" / f"part-{i:05d}.parquet").unlink()
        d = staging_dir(out) / f"__shard={i}"
        d.mkdir(parents=True)
        p = parts[i].assign(__row=range(len(parts[i])), __n=len(parts[i]))
        if i == 0:
            p[[f"gap__{x}" for x in ASPECTS]] += 100
        if i == 1:
            p = p.iloc[:-1]
        p.to_parquet(d / "a.parquet", index=False)
        if i == 2:
            raw = (d / "a.parquet").read_bytes()
            (d / "a.parquet").write_bytes(raw[: len(raw) // 2])
    s = score_sharded_ray(folder, HashGapsFactory(4), ASPECTS, out, shard_size=50, actors=1)
    assert s["n_staged_committed_on_resume"] == 1 and s["n_shards_scored_now"] == 2
    got0 = pd.read_parquet(out / "scores" / "part-00000.parquet")
    np.testing.assert_array_equal(got0["gap__honesty"], parts[0]["gap__honesty"] + 100)
    for i in (1, 2):   # redone: equal to the local engine's part
        pd.testing.assert_frame_equal(pd.read_parquet(out / "scores" / f"part-{i:05d}.parquet"),
                                      parts[i], check_exact=True)
    assert len(a) == sum(len(p) for p in parts.values())


def test_object_store_uri_is_refused_with_a_fix(tmp_path):
    from pdselect.errors import StageError
    from pdselect.score.ray_engine import posix_path

    assert posix_path(f"file://{tmp_path}") == tmp_path
    with pytest.raises(StageError, match="(?s)rename.*score.engine=local.*mount"):
        posix_path("memory://bucket/pairs.parquet")


def test_score_stage_takes_the_ray_settings_from_config(tmp_path):
    from pdselect.config import load_config
    from pdselect.score.engine import score_stage

    df = make_pairs(120, seed=4)
    folder = write_shards(df, tmp_path / "in", [60, 60])
    cfg = load_config(None, ["score.shard_size=40"])
    local = score_stage(folder, HashGaps(4), ASPECTS, cfg, tmp_path / "local")
    cfg = load_config(None, ["score.shard_size=40", "score.engine=ray", "score.ray_actors=2",
                             "score.ray_batch_size=7", "score.ray_cpus_per_actor=1"])
    got = score_stage(folder, HashGapsFactory(4), ASPECTS, cfg, tmp_path / "ray")
    assert got["engine"] == "ray" and got["n_scored"] == local["n_scored"]
    assert got["q"] == local["q"]
    a = read_scores(tmp_path / "local").sort_values("pair_id", ignore_index=True)
    b = read_scores(tmp_path / "ray").sort_values("pair_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_an_actor_given_a_gpu_encodes_on_cuda(monkeypatch):
    import pdselect.reward as reward
    import pdselect.score.ray_engine as R
    from pdselect.config import ProxyConfig

    seen = []

    class Fake:
        gaps = "gaps-fn"

    monkeypatch.setattr(reward, "load_proxy_models",
                        lambda d, cfg: seen.append(cfg.device) or Fake())
    f = R.ProxyGapsFactory("/models", ProxyConfig())
    monkeypatch.setattr(R, "_actor_gpus", lambda: [])
    assert f() == "gaps-fn"
    monkeypatch.setattr(R, "_actor_gpus", lambda: [0])
    f()
    f2 = R.ProxyGapsFactory("/models", ProxyConfig(device="cuda:1"))
    f2()
    assert seen == ["cpu", "cuda", "cuda:1"]


def test_impossible_resources_fail_fast(tmp_path):
    """More GPUs (or CPUs) per pool than the cluster has: a StageError before any scoring,
    not Ray's endless wait. The local Ray of this module has 2 CPUs and no GPU."""
    import time

    from pdselect.errors import StageError
    from pdselect.score.ray_engine import check_resources

    folder = write_shards(make_pairs(60, seed=1), tmp_path / "in", [60])
    for kw, what in (({"gpus_per_actor": 1.0}, "GPU"), ({"cpus_per_actor": 2.0}, "CPU")):
        t = time.time()
        with pytest.raises(StageError, match=f"asks for 2 actors x .* {what}s") as e:
            score_sharded_ray(folder, HashGapsFactory(4), ASPECTS, tmp_path / f"o{what}",
                              shard_size=30, actors=2, **kw)
        assert time.time() - t < 30 and "Fix:" in str(e.value)
        assert not list((tmp_path / f"o{what}" / "scores").glob("part-*"))
    nodes = [{"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 1}]
    check_resources(2, 4, 1, nodes)                       # one actor per node: fits
    check_resources(4, 1, 0.5, nodes)                     # fractions share a GPU
    with pytest.raises(StageError, match="largest node"):
        check_resources(1, 1, 2, nodes)                   # 2 GPUs exist, not on one node
    with pytest.raises(StageError):
        check_resources(3, 1, 1, nodes)
