"""The select stage's hand-off: the TRL dataset folder and the inspection table.

    select/dpo/train-00000.parquet   the kept pairs, in selector order: prompt, chosen, rejected
                                     (in the select.chat_format layout, select/formats.py),
                                     pair_id, aspect, rank, pd, gap__<aspect> (raw proxy reward
                                     gap per aspect), label_source ("aspect")
    select/dpo/test-00000.parquet    the held-out pairs, same columns (select/handoff.py)
    select/dpo/README.md             the dataset card (select/card.py)
    select/inspect.parquet           every pool pair: rank, kept, ids, aspect, pd, gap__*,
                                     norm__* (the normalised gaps PD sums), lengths and texts

The folder holds nothing else, so ``datasets.load_dataset("<run>/select/dpo")`` and
``trl dpo --dataset_name <run>/select/dpo`` read it as the ``train`` and ``test`` splits the
card's ``configs`` name. TRL's DPOTrainer ignores the extra columns: its collator reads only
the token-id columns it builds, and the Trainer drops the other columns before batching
(``remove_unused_columns``, on by default); tests/test_handoff.py trains and evaluates on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


DATA_FILE = "train-00000"
TEXT_COLUMNS = ["prompt", "chosen", "rejected"]


def gap_columns(df: pd.DataFrame, prefix: str = "gap__") -> list[str]:
    return [c for c in df.columns if c.startswith(prefix)]


def numeric_table(pool: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """pair_id, rank, kept and the pool's score columns: the inspection table's numbers."""
    scores = [c for c in ("pd", "pd_rati", "margin") if c in pool.columns]
    cols = ["pair_id", *scores, *gap_columns(pool), *gap_columns(pool, "norm__")]
    return (selection[["pair_id", "rank", "selected"]].rename(columns={"selected": "kept"})
            .merge(pool[cols], on="pair_id", validate="1:1"))


def inspect_columns(numbers: pd.DataFrame) -> list[str]:
    """The inspection table's columns, in their order (``numbers``: a numeric_table)."""
    scores = [c for c in ("pd", "pd_rati", "margin") if c in numbers.columns]
    return ["rank", "kept", "pair_id", "input_id", "aspect", *scores, *gap_columns(numbers),
            *gap_columns(numbers, "norm__"), "len_chosen", "len_rejected", *TEXT_COLUMNS]


def inspect_table(pairs: pd.DataFrame, pool: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """One row per pool pair, in selector order (rank 0 first): why each pair was kept or not.
    The whole table in memory; the select stage writes the same table in bounded memory
    (select/rank_buckets.py).

    ``pairs``: the public train pairs; ``pool``: the score pool (load_score_pool);
    ``selection``: pair_id, selected, rank."""
    numbers = numeric_table(pool, selection)
    t = numbers.merge(pairs[["pair_id", "input_id", "aspect", "len_chosen", "len_rejected",
                             "input", "chosen", "rejected"]], on="pair_id", validate="1:1")
    t = t.rename(columns={"input": "prompt"}).sort_values("rank", kind="mergesort")
    return t[inspect_columns(numbers)].reset_index(drop=True)


def load_inspect(root: Path, texts: bool = True) -> pd.DataFrame:
    """``select/inspect.parquet``, or the same table rebuilt from the selection (a select stage
    finished by a pdselect version that did not write it). ``texts=False`` leaves out the
    prompt / chosen / rejected columns (numbers only: a million pairs' texts are gigabytes;
    :func:`inspect_texts` reads them for a few pairs)."""
    root = Path(root)
    path = root / "select" / "inspect.parquet"
    if path.exists():
        if texts:
            return pd.read_parquet(path)
        import pyarrow.parquet as pq

        names = pq.ParquetFile(path).schema_arrow.names
        return pd.read_parquet(path, columns=[c for c in names if c not in TEXT_COLUMNS])
    from ..run.artifacts import RunDir
    from ..run.stage_tables import load_score_pool, train_pairs
    from ..data.schema import public_view

    run = RunDir(root)
    table = inspect_table(public_view(train_pairs(run)), load_score_pool(run),
                          pd.read_parquet(root / "select" / "selection.parquet"))
    return table if texts else table.drop(columns=TEXT_COLUMNS)


def inspect_texts(root: Path, pair_ids) -> pd.DataFrame:
    """pair_id + prompt / chosen / rejected of the given pairs only (filtered while scanning)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    path = Path(root) / "select" / "inspect.parquet"
    ids = list(pair_ids)
    if not path.exists():
        return load_inspect(root).loc[lambda t: t["pair_id"].isin(ids),
                                      ["pair_id", *TEXT_COLUMNS]]
    return ds.dataset(path).to_table(columns=["pair_id", *TEXT_COLUMNS],
                                     filter=pc.field("pair_id").isin(ids)).to_pandas()


def trl_table(inspect: pd.DataFrame, chat_format: str = "standard") -> pd.DataFrame:
    """The kept pairs as a TRL preference dataset (``inspect_table`` order = selector order),
    in the ``chat_format`` layout (select/formats.py).

    Only public columns travel: no oracle score (pd_rati) and no margin baseline. Train pairs
    are labelled by their ONE aspect (``label_source`` = "aspect"; the test split's labels are
    described in select/handoff.py)."""
    from .formats import apply_layout

    kept = inspect[inspect["kept"]]
    cols = [*TEXT_COLUMNS, "pair_id", "aspect", "rank", "pd", *gap_columns(kept)]
    out = kept[[c for c in cols if c in kept.columns]].reset_index(drop=True)
    out["label_source"] = "aspect"
    return apply_layout(out, chat_format)


def pd_cutoff(inspect: pd.DataFrame, method: str) -> float | None:
    """The PD value at the cut: the largest kept PD for ``pd`` (the smallest for ``pd_high``);
    None for selectors that do not rank by PD or when nothing is kept / left out."""
    kept = inspect.loc[inspect["kept"], "pd"] if "pd" in inspect else pd.Series(dtype=float)
    if method not in ("pd", "pd_high") or kept.empty:
        return None
    return float(kept.max() if method == "pd" else kept.min())


def length_stats(pairs: pd.DataFrame) -> dict:
    """Mean lengths (characters) and the share of pairs whose chosen response is longer."""
    lc = pairs["len_chosen"].to_numpy(np.float64)
    lr = pairs["len_rejected"].to_numpy(np.float64)
    if len(lc) == 0:
        return {}
    return {"n": int(len(lc)), "mean_len_chosen": float(lc.mean()),
            "mean_len_rejected": float(lr.mean()), "share_chosen_longer": float((lc > lr).mean())}
