"""Streaming, sharded, resumable scoring (METHOD.md 3.3-4 at millions of pairs).

Two passes over a Parquet pair file (or a folder of Parquet shards), never holding the texts of
more than one shard in memory:

    pass 1  gaps   : rows [s*S, (s+1)*S) -> gaps_fn(batch) (n, K) -> <out>/scores/part-<s>.parquet
                     columns: pair_id, aspect, gap__<a> ... [, margin]
    pass 2  PD     : load ONLY the gap + aspect columns (N x K float64: 32 MB per million pairs
                     at K = 4), q_k = pd.normaliser (exact gamma-quantile), then per shard
                     pd.normalise + pd.preference_divergence -> <out>/pd/part-<s>.parquet with
                     the columns of score.table.pd_frame (pair_id, aspect, gap__*, norm__*, pd).

    plan = plan_shards(["pairs.parquet"], shard_size=100_000)
    summary = score_sharded("pairs.parquet", models.gaps, aspects, out_dir, shard_size=100_000)
    q = pd_pass(out_dir, aspects, gamma=0.9)

Shards are fixed row ranges of the input (planned from Parquet metadata), so shard s always
holds the same rows; each part file is written so that it exists iff it is complete (a temporary
name renamed into place, or on an object store one put of the whole file: score/storage.py). A
killed run resumes by skipping the parts that exist: no shard is redone, no row is written
twice, and the result equals an uninterrupted run. ``_plan.json`` pins the
input files, shard size and aspects; resuming with a different one is refused. Every path may
be a plain path, a ``file://`` URI or any fsspec URI whose package is installed (``s3://`` with
s3fs, ...); URIs stay URIs in ``_plan.json``, so a resume on the same store matches.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StageError
from ..pd import normaliser
from . import storage
from .storage import Where
from .table import check_gaps, check_pd, gap_col, gaps_frame, label_index, pd_frame

log = logging.getLogger(__name__)

GapsFn = Callable[[pd.DataFrame], np.ndarray]
#: public columns a proxy scorer reads; hidden h_* columns are never read from the input
SCORER_COLUMNS = ["pair_id", "input_id", "input", "chosen", "rejected", "aspect"]
GAPS_DIR, PD_DIR, PLAN_FILE, Q_FILE = "scores", "pd", "_plan.json", "q.json"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


# ----------------------------------------------------------------------------- planning
def list_parquet(path: str | Path) -> list[Where]:
    """The Parquet files of ``path`` (one file, or a folder's ``*.parquet`` in name order)."""
    p = storage.resolve(path)
    found = storage.kind(p)
    if found == "file":
        return [p]
    if found == "directory":
        files = storage.parquet_files(p)
        if files:
            return files
    raise StageError(f"{p}: no Parquet pair file or folder of *.parquet shards there. Fix: "
                     "point at the pairs file written by the aggregate stage (or your shards).")


@dataclass
class ShardPlan:
    """Which rows of which files make up each shard; stable for a given input + shard size."""

    files: list[str]
    rows_per_file: list[int]
    bytes_per_file: list[int]
    shard_size: int
    aspects: list[str]

    @property
    def n_rows(self) -> int:
        return int(sum(self.rows_per_file))

    @property
    def n_shards(self) -> int:
        return max(1, -(-self.n_rows // self.shard_size)) if self.n_rows else 0

    def bounds(self, index: int) -> tuple[int, int]:
        start = index * self.shard_size
        return start, min(start + self.shard_size, self.n_rows)


def plan_shards(path: str | Path, shard_size: int, aspects: Sequence[str]) -> ShardPlan:
    if shard_size < 1:
        raise StageError(f"shard_size={shard_size} must be >= 1 (set score.shard_size).")
    files = list_parquet(path)
    rows = [storage.num_rows(f) for f in files]
    return ShardPlan([storage.uri(f) for f in files], rows, [storage.size(f) for f in files],
                     int(shard_size), list(aspects))


def read_rows(plan: ShardPlan, start: int, stop: int, columns: Sequence[str]) -> pd.DataFrame:
    """Rows [start, stop) of the concatenated input files, only ``columns``; reads just the row
    groups that overlap the range, in record batches (memory ~ one shard)."""
    pieces: list[pa.Table] = []
    offset = 0
    for f, n in zip(plan.files, plan.rows_per_file):
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            pieces.append(_read_file_range(storage.resolve(f), lo - offset, hi - offset,
                                           columns))
        offset += n
        if offset >= stop:
            break
    if not pieces:
        return pd.DataFrame({c: [] for c in columns})
    return pa.concat_tables(pieces).to_pandas()


def _read_file_range(path: Where, lo: int, hi: int, columns: Sequence[str]) -> pa.Table:
    with storage.open_parquet(path) as pf:
        return _read_groups(pf, path, lo, hi, columns)


def _read_groups(pf: pq.ParquetFile, path: Where, lo: int, hi: int,
                 columns: Sequence[str]) -> pa.Table:
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise StageError(f"{path}: missing columns {missing} (it has {pf.schema_arrow.names}). "
                         "Fix: give the pair table written by the aggregate stage.")
    md, groups, first, pos = pf.metadata, [], None, 0
    for g in range(md.num_row_groups):
        n = md.row_group(g).num_rows
        if pos + n > lo and pos < hi:
            groups.append(g)
            first = pos if first is None else first
        pos += n
    out, at = [], first
    for batch in pf.iter_batches(batch_size=65_536, row_groups=groups, columns=list(columns)):
        a, b = max(lo - at, 0), min(hi - at, batch.num_rows)
        if a < b:
            out.append(batch.slice(a, b - a))
        at += batch.num_rows
        if at >= hi:
            break
    return pa.Table.from_batches(out) if out else pf.schema_arrow.empty_table().select(columns)


def _check_plan(out_dir: Where, plan: ShardPlan) -> None:
    """Write the plan, or refuse to resume a run made with a different one."""
    f = out_dir / PLAN_FILE
    if storage.exists(f):
        old = storage.read_json(f)
        if old != asdict(plan):
            diff = [k for k in old if old.get(k) != asdict(plan).get(k)]
            raise StageError(f"{out_dir} holds a partial scoring run with a different {diff}. "
                             f"Fix: use another output folder, or delete {out_dir} to start over.")
    else:
        storage.write_json(f, asdict(plan))


# ----------------------------------------------------------------------------- pass 1: gaps
def score_shard(plan: ShardPlan, index: int, gaps_fn: GapsFn, out_dir: str | Path,
                columns: Sequence[str] = SCORER_COLUMNS, split: str | None = "train",
                margin_fn: GapsFn | None = None) -> int:
    """Score one shard and write its part atomically; returns rows written (0 if it existed)."""
    path = storage.resolve(out_dir) / GAPS_DIR / part_name(index)
    if storage.exists(path):
        return 0
    start, stop = plan.bounds(index)
    cols = list(dict.fromkeys(list(columns) + (["split"] if split else [])))
    df = read_rows(plan, start, stop, cols)
    if split:  # the selection pool is the train split; the test split is never scored
        df = df[df["split"] == split].drop(columns="split").reset_index(drop=True)
    table = gaps_frame(df, gaps_fn, plan.aspects, margin_fn)
    storage.write_table(path, pa.Table.from_pandas(table, preserve_index=False))
    return len(table)


def pending_shards(plan: ShardPlan, out_dir: str | Path) -> list[int]:
    d = storage.resolve(out_dir) / GAPS_DIR
    return [i for i in range(plan.n_shards) if not storage.exists(d / part_name(i))]


def prepare(pairs_path: str | Path, aspects: Sequence[str], out_dir: str | Path,
            shard_size: int) -> ShardPlan:
    """Plan the shards, pin the plan in ``out_dir`` and clear temp files of a killed run."""
    out_dir = storage.resolve(out_dir)
    plan = plan_shards(pairs_path, shard_size, aspects)
    storage.makedirs(out_dir / GAPS_DIR)
    _check_plan(out_dir, plan)
    for folder in (out_dir, out_dir / GAPS_DIR, out_dir / PD_DIR):
        storage.clear_tmp(folder)  # left by a SIGKILL between write and rename (local only)
    return plan


def score_sharded(pairs_path: str | Path, gaps_fn: GapsFn, aspects: Sequence[str],
                  out_dir: str | Path, shard_size: int = 100_000,
                  columns: Sequence[str] = SCORER_COLUMNS, split: str | None = "train",
                  margin_fn: GapsFn | None = None, progress: bool = False) -> dict:
    """Pass 1 in this process: score every missing shard. Returns counts for the manifest."""
    out_dir = storage.resolve(out_dir)
    plan = prepare(pairs_path, aspects, out_dir, shard_size)
    todo = pending_shards(plan, out_dir)
    it: Iterable[int] = todo
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(todo, desc="scoring shards", unit="shard")
    n = 0
    for i in it:
        n += score_shard(plan, i, gaps_fn, out_dir, columns, split, margin_fn)
        log.info("shard %d/%d scored", i + 1, plan.n_shards)
    return {"n_shards": plan.n_shards, "n_shards_scored_now": len(todo),
            "n_shards_resumed": plan.n_shards - len(todo), "n_rows_scored_now": n,
            "n_input_rows": plan.n_rows}


# ----------------------------------------------------------------------------- pass 2: PD
def gap_parts(out_dir: str | Path) -> list[Where]:
    return storage.glob(storage.resolve(out_dir) / GAPS_DIR, "part-*.parquet")


def load_gaps(out_dir: str | Path, aspects: Sequence[str]) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """(delta (N, K) float64, label (N,) int64, part row offsets) from the gap parts, reading
    only the gap columns and the dictionary-encoded aspect column."""
    parts = gap_parts(out_dir)
    sizes = [storage.num_rows(p) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    delta = np.empty((int(offsets[-1]), len(aspects)), dtype=np.float64)
    label = np.empty(int(offsets[-1]), dtype=np.int64)
    cols = [gap_col(a) for a in aspects]
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        t = storage.read_table(p, columns=cols + ["aspect"], read_dictionary=["aspect"])
        for c, name in enumerate(cols):
            delta[lo:hi, c] = t.column(name).to_numpy()
        asp = t.column("aspect").combine_chunks()
        if len(asp):
            codes = label_index(pd.Series(asp.dictionary.to_pylist()), list(aspects))
            label[lo:hi] = codes[asp.indices.to_numpy(zero_copy_only=False)]
    return delta, label, offsets


def pd_pass(out_dir: str | Path, aspects: Sequence[str], gamma: float,
            weights: np.ndarray | None = None) -> dict[str, float]:
    """q_k over ALL scored pairs, then PD per part (score/pd.py does the maths). Returns {aspect: q}.

    Every pd part is rewritten (cheap next to pass 1), so a changed gamma never mixes."""
    out_dir = storage.resolve(out_dir)
    started = storage.exists(out_dir / GAPS_DIR) or storage.exists(out_dir / PLAN_FILE)
    if started and pending_shards(_load_plan(out_dir), out_dir):  # (object stores: no folders)
        raise StageError(f"{out_dir}: pass 1 is incomplete; run score_sharded first.")
    delta, label, offsets = load_gaps(out_dir, aspects)
    check_gaps(delta, list(aspects), np.arange(len(delta)), "row of the pair table")
    q = normaliser(delta, label, gamma)
    ptp = [np.inf, -np.inf]  # PD range over all parts, for the constant-PD check
    for p, lo, hi in zip(gap_parts(out_dir), offsets[:-1], offsets[1:]):
        keep = pd_frame(storage.read_table(p).to_pandas(), aspects, q, label[lo:hi], weights)
        if len(keep):
            ptp = [min(ptp[0], keep["pd"].min()), max(ptp[1], keep["pd"].max())]
        storage.write_table(out_dir / PD_DIR / p.name,
                            pa.Table.from_pandas(keep, preserve_index=False))
    if offsets[-1] > 1:
        check_pd(np.array(ptp))
    qd = {a: float(q[c]) for c, a in enumerate(aspects)}
    storage.write_json(out_dir / Q_FILE, {"gamma": gamma, "q": qd, "n_scored": int(offsets[-1])})
    return qd


def _load_plan(out_dir: Where) -> ShardPlan:
    return ShardPlan(**storage.read_json(out_dir / PLAN_FILE))


def read_scores(out_dir: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole PD score table (for small data and tests); large runs stream the parts."""
    parts = storage.glob(storage.resolve(out_dir) / PD_DIR, "part-*.parquet")
    return pd.concat([storage.read_table(p, columns=columns).to_pandas() for p in parts],
                     ignore_index=True)
