"""Repeated ratings of one response: averaged, the one rule of the generic and mqm sources.

A response text given again under the same input (a second rater's row of a per-rater wide
table, or the same text twice) is one response rated twice: its ratings are averaged into the
first row, as the mqm source averages its raters and merges systems' identical translations,
and as the generic long shape averages an aspect rated on several rows (issue 17: generic used
to keep the first rater's ratings and count the others as duplicates). Each rating is
range-checked on its own line when it is read; the mean is over the valid ones (NaN-aware).
The number of responses averaged is counted in the rejects file under :data:`AVERAGED` (kept,
not dropped).

The TableBuilder may have streamed the first row to its spill file already, so the means are
applied when the table is finished: to the rows in memory, and by one streamed rewrite of the
spill file (only when it holds a repeated response) plus the id-only frames kept beside it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

AVERAGED = "response rated on several rows per aspect: ratings averaged (kept, not dropped)"


def _nanmean(values: list[float]) -> float:
    xs = [x for x in values if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def patch_frame(df: pd.DataFrame, repeats: dict, digest, columns: list[str],
                by_rid: dict) -> pd.DataFrame:
    """Rows of ``df`` (with texts) whose (input_id, digest of the stripped response) was
    repeated get the mean of their ratings and the repeats'; ``by_rid`` collects
    response_id -> new ratings for the frames without texts."""
    if df.empty:
        return df
    keys = [(i, digest(str(r).strip())) for i, r in zip(df["input_id"], df["response"])]
    hit = [k in repeats for k in keys]
    if not any(hit):
        return df
    df = df.copy()
    for pos in [p for p, h in enumerate(hit) if h]:
        new = {c: _nanmean([float(df.iat[pos, df.columns.get_loc(c)])]
                           + [r[c] for r in repeats[keys[pos]]]) for c in columns}
        for c, v in new.items():
            df.iat[pos, df.columns.get_loc(c)] = v
        by_rid[df.iat[pos, df.columns.get_loc("response_id")]] = new
    return df


def rewrite_spill(path: Path, repeats: dict, digest, columns: list[str]) -> dict:
    """Apply the means to a committed spill file, row group by row group (bounded memory);
    returns response_id -> new ratings."""
    import pyarrow.parquet as pq

    from ..run.artifacts import parquet_appender

    by_rid: dict = {}
    src = pq.ParquetFile(path)
    tmp = path.with_name(f".{path.name}.averaged")
    with parquet_appender(tmp) as out:
        for g in range(src.num_row_groups):
            t = src.read_row_group(g)
            out.append(patch_frame(t.to_pandas(), repeats, digest, columns, by_rid)
                       .astype({c: "float64" for c in columns}))
    tmp.replace(path)
    return by_rid


def patch_light(frames: list[pd.DataFrame], by_rid: dict) -> list[pd.DataFrame]:
    """The id-only frames with the new ratings of the responses in ``by_rid``."""
    out = []
    for f in frames:
        hit = f["response_id"].isin(list(by_rid))
        if hit.any():
            f = f.copy()
            for i in f.index[hit]:
                for c, v in by_rid[f.at[i, "response_id"]].items():
                    f.at[i, c] = v
        out.append(f)
    return out
