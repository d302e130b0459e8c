"""score.engine=ray: Ray Data actor pool over Parquet shards == the local engine."""

from __future__ import annotations

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="ray[data] is not installed: engine=ray is untestable "
                                        "here (pip install 'ray[data]')")

from pdselect.scale import pd_pass, read_scores, score_sharded  # noqa: E402
from pdselect.scale.ray_engine import score_sharded_ray  # noqa: E402
from pdselect.scale.testing import HashGaps, HashGapsFactory  # noqa: E402

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
                          concurrency=2)
    assert s["n_shards"] == 6 and s["n_shards_resumed"] == 2 and s["n_shards_scored_now"] == 4
    assert s["n_rows_scored_now"] == len(read_scores_gaps(out)) - len(read_scores_gaps(out, 2))
    pd_pass(out, ASPECTS, 0.9)
    a = read_scores(local).sort_values("pair_id", ignore_index=True)
    b = read_scores(out).sort_values("pair_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def read_scores_gaps(out, first_n=None):
    parts = sorted((out / "scores").glob("part-*.parquet"))[:first_n]
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
