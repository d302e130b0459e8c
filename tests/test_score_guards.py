"""No NaN reaches a score silently: non-finite gaps, a constant PD and an empty selection stop
the stage with the reason (in memory and in the sharded engine alike)."""

import numpy as np
import pandas as pd
import pytest

from pdselect.errors import ConfigError, StageError
from pdselect.score.sharded import pd_pass, score_sharded
from pdselect.score.table import score_table
from pdselect.select.selectors import PDSelector, budget_size

ASPECTS = ["a", "b", "c"]


def _pairs(n=12):
    return pd.DataFrame({"pair_id": [f"p{i:02d}" for i in range(n)],
                         "input_id": [f"x{i // 3}" for i in range(n)],
                         "input": [f"in {i // 3}" for i in range(n)],
                         "chosen": [f"w {i}" for i in range(n)],
                         "rejected": [f"l {i}" for i in range(n)],
                         "aspect": [ASPECTS[i % 3] for i in range(n)]})


def _gaps(n=12, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gap_stops_scoring(bad):
    g = _gaps()
    g[4, 1] = bad
    with pytest.raises(StageError, match=r"1 non-finite reward gaps .* \{'b': 1\}.*'p04'.*Fix"):
        score_table(_pairs(), g, ASPECTS, 0.9)


def test_constant_pd_stops_scoring():
    with pytest.raises(StageError, match="PD is the same value .* for all 12 pairs.*Fix"):
        score_table(_pairs(), np.zeros((12, 3)), ASPECTS, 0.9)


def test_sharded_engine_has_the_same_guards(tmp_path):
    f = tmp_path / "pairs.parquet"
    _pairs().to_parquet(f)

    def nan_gaps(df):
        g = _gaps(len(df))
        g[0, 0] = np.nan
        return g

    score_sharded(f, nan_gaps, ASPECTS, tmp_path / "o1", shard_size=5, split=None)
    with pytest.raises(StageError, match="non-finite.*first row of the pair table 0"):
        pd_pass(tmp_path / "o1", ASPECTS, 0.9)
    score_sharded(f, lambda df: np.zeros((len(df), 3)), ASPECTS, tmp_path / "o2",
                  shard_size=5, split=None)
    with pytest.raises(StageError, match="PD is the same value"):
        pd_pass(tmp_path / "o2", ASPECTS, 0.9)


def test_selection_of_zero_pairs_is_an_error():
    with pytest.raises(ConfigError, match="select.budget.*pool is empty"):
        budget_size(0, 0.3)
    empty = pd.DataFrame({"pair_id": pd.Series([], dtype=str), "pd": pd.Series([], dtype=float)})
    with pytest.raises(ConfigError, match="pool is empty"):
        PDSelector(budget=0.3).fit(empty)
