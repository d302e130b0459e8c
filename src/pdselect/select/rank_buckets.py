"""The select stage's outputs written in rank order while holding one shard of texts.

``inspect.parquet`` lists every pool pair with its texts in selector order (rank 0 first) and
the TRL dataset holds the kept ones in the same order; at a million pairs those texts are
gigabytes, and the rank order is unrelated to the order of the pair file. So the texts are
moved in two passes (an external bucket sort on the rank, which is a permutation 0..N-1):

    pass 1  each batch of <= S pool pairs of aggregate/pairs.parquet (texts + the numeric
            selection table) -> appended to bucket b = rank // S  (select/_buckets/b-*.parquet)
    pass 2  bucket by bucket: sort by rank -> append to inspect.parquet; kept rows -> TRL file

Memory: the numeric table (N rows, no texts) plus one batch or one bucket of S rows with texts
(a bucket widens to N / 256 ranks when S is smaller: at most 256 files open).
The result is the table ``export.inspect_table`` builds in memory, row for row
(tests/test_bounded_memory.py); S (``score.shard_size``) changes neither content nor order.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..errors import StageError
from ..run.artifacts import atomic_path, json_line, parquet_appender
from .export import DATA_FILE, TEXT_COLUMNS, inspect_columns, numeric_table, trl_table

MAX_BUCKETS = 256  # bucket files open at once in pass 1 (see bucket_width)
#: the pair file's columns the inspection table takes (besides the numbers of the pool)
PAIR_COLUMNS = ["pair_id", "input_id", "aspect", "len_chosen", "len_rejected", "input",
                "chosen", "rejected"]


def bucket_width(n: int, S: int) -> int:
    """Ranks per bucket: S, widened so that at most MAX_BUCKETS files are open at once (a
    small score.shard_size on a large pool must not exhaust the file handles)."""
    return max(S, -(-n // MAX_BUCKETS))


def _bucket_pass(pairs_path: Path, numbers: pd.DataFrame, buckets: Path,
                 S: int) -> pd.DataFrame:
    """Pass 1: the pool pairs' texts, batch by batch, into bucket files by rank. Returns the
    rows seen without their texts (the numeric inspection table, in file order)."""
    width = bucket_width(len(numbers), S)
    numbers = numbers.set_index("pair_id")
    have = set(pq.ParquetFile(pairs_path).schema_arrow.names)
    columns = [c for c in [*PAIR_COLUMNS, "split"] if c in have]
    files, light = {}, []
    with ExitStack() as stack:
        for batch in pq.ParquetFile(pairs_path).iter_batches(batch_size=S, columns=columns):
            df = batch.to_pandas()
            df = df[df["pair_id"].isin(numbers.index)]
            if "split" in df:  # test pairs are not in the pool; a pool id outside train is
                df = df[df["split"] == "train"]  # impossible, the count check below says so
            df = df.drop(columns="split", errors="ignore").join(numbers, on="pair_id")
            light.append(df.drop(columns=["input", "chosen", "rejected"]))
            for b, part in df.groupby(df["rank"].to_numpy() // width, sort=True):
                if b not in files:
                    files[b] = stack.enter_context(
                        parquet_appender(buckets / f"b-{int(b):05d}.parquet"))
                files[b].append(part)
    return pd.concat(light, ignore_index=True)


def _order(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    df = df.rename(columns={"input": "prompt"}).sort_values("rank", kind="mergesort")
    return df[cols].reset_index(drop=True)


def write_select_outputs(pairs_path: str | Path, pool: pd.DataFrame, selection: pd.DataFrame,
                         out: str | Path, chat_format: str = "standard",
                         output_format: str = "parquet", shard_size: int = 100_000) -> dict:
    """Write ``out/inspect.parquet`` and the TRL dataset ``out/dpo/train-00000.<fmt>`` (alone in
    its folder) holding at most ``shard_size`` pairs' texts at a time. Returns the numeric
    inspection table (no texts: cut-off and length statistics read it) and the data file."""
    out, S = Path(out), max(1, int(shard_size))
    numbers = numeric_table(pool, selection)
    buckets = out / "_buckets"
    shutil.rmtree(buckets, ignore_errors=True)  # a killed earlier select left its buckets
    try:
        light, data_file = _write_both(Path(pairs_path), numbers, buckets, out, S, chat_format,
                                       output_format)
    finally:
        shutil.rmtree(buckets, ignore_errors=True)
    cols = inspect_columns(numbers)
    return {"inspect": _order(light, [c for c in cols if c not in TEXT_COLUMNS]),
            "data_file": data_file}


def _write_both(pairs_path: Path, numbers: pd.DataFrame, buckets: Path, out: Path, S: int,
                chat_format: str, output_format: str) -> tuple[pd.DataFrame, Path]:
    light = _bucket_pass(pairs_path, numbers, buckets, S)
    if len(light) != len(numbers):
        raise StageError(f"{pairs_path}: {len(light)} of the {len(numbers)} scored pool pairs "
                         "found in the pair file. The score stage ran on another aggregate: "
                         "re-run `pdselect run` with --force score.")
    cols = inspect_columns(numbers)
    return light, _write_ordered(buckets, out, cols, chat_format, output_format)


def _write_ordered(buckets: Path, out: Path, cols: list[str], chat_format: str,
                   output_format: str) -> Path:
    """Pass 2: buckets in rank order -> inspect.parquet and the kept rows -> the TRL file."""
    folder = out / "dpo"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    data_file = folder / f"{DATA_FILE}.{'jsonl' if output_format == 'jsonl' else 'parquet'}"
    with ExitStack() as stack:
        inspect = stack.enter_context(parquet_appender(out / "inspect.parquet"))
        trl = (_JsonlAppender(stack, data_file) if output_format == "jsonl"
               else stack.enter_context(parquet_appender(data_file)))
        part, n_kept = None, 0
        for f in sorted(buckets.glob("b-*.parquet")):
            part = _order(pd.read_parquet(f), cols)
            inspect.append(part)
            if part["kept"].any():
                trl.append(trl_table(part, chat_format))
                n_kept += int(part["kept"].sum())
        if part is None:
            raise StageError("the selection pool is empty: nothing to write.")
        if not n_kept:  # nothing kept: the dataset still exists, with its columns
            trl.append(trl_table(part, chat_format))
    return data_file


class _JsonlAppender:
    """``select.output_format=jsonl``: records appended batch by batch (same atomic rename)."""

    def __init__(self, stack: ExitStack, path: Path):
        tmp = stack.enter_context(atomic_path(path))
        self.fh = stack.enter_context(open(tmp, "w", encoding="utf-8"))

    def append(self, df: pd.DataFrame) -> None:
        for r in df.to_dict("records"):
            self.fh.write(json_line(r))
