"""Tables one stage reads from another stage's artifacts in a run directory.

    pairs = train_pairs(run)        # the aggregate stage's train split (hidden h_ columns kept)
    pool = load_score_pool(run)     # the score table + PD-rati: what selectors rank

Kept apart from pipeline.py so that the stages' helpers (export, report) can read them without
importing the pipeline that calls them.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from .artifacts import RunDir


def train_pairs(run: RunDir, columns: list[str] | None = None) -> pd.DataFrame:
    """The aggregate stage's TRAIN pairs (the selection pool), hidden columns included: callers
    that train or score pass them through ``schema.public_view``.

    ``columns``: read only these (and ``split``, to filter): a stage that needs numbers only
    must not read a million pairs' texts (Parquet reads columns, not rows)."""
    path = run.root / "aggregate" / "pairs.parquet"
    if columns is not None:
        have = set(pq.ParquetFile(path).schema_arrow.names)
        columns = [c for c in dict.fromkeys([*columns, "split"]) if c in have]
    pairs = pd.read_parquet(path, columns=columns)
    return pairs[pairs["split"] == "train"].reset_index(drop=True)


def load_score_pool(run: RunDir) -> pd.DataFrame:
    """Scores joined with the PD-rati oracle (if any) and ``len_gap`` = len_chosen -
    len_rejected (characters, the length baseline's key): the table selectors run on."""
    table = pd.read_parquet(run.root / "score" / "scores.parquet")
    rati = run.root / "score" / "pd_rati.parquet"
    if rati.exists():
        table = table.merge(pd.read_parquet(rati), on="pair_id", how="left", validate="1:1")
    lens = train_pairs(run, ["pair_id", "len_chosen", "len_rejected"])
    if {"len_chosen", "len_rejected"} <= set(lens.columns):  # numbers only, no texts read
        gap = lens["len_chosen"].astype("int64") - lens["len_rejected"].astype("int64")
        table = table.merge(pd.DataFrame({"pair_id": lens["pair_id"], "len_gap": gap}),
                            on="pair_id", how="left", validate="1:1")
    return table
