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
holds the same rows; each part file is written to a temporary name and renamed, so it exists
iff it is complete. A killed run resumes by skipping the parts that exist: no shard is redone,
no row is written twice, and the result equals an uninterrupted run. ``_plan.json`` pins the
input files, shard size and aspects; resuming with a different one is refused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..run.artifacts import atomic_path, write_json
from ..errors import StageError
from ..pd import normaliser
from .table import check_gaps, check_pd, gap_col, gaps_frame, label_index, pd_frame

log = logging.getLogger(__name__)

GapsFn = Callable[[pd.DataFrame], np.ndarray]
#: public columns a proxy scorer reads; hidden h_* columns are never read from the input
SCORER_COLUMNS = ["pair_id", "input_id", "input", "chosen", "rejected", "aspect"]
GAPS_DIR, PD_DIR, PLAN_FILE, Q_FILE = "scores", "pd", "_plan.json", "q.json"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


# ----------------------------------------------------------------------------- planning
def local_path(path: str | Path) -> Path:
    """``path`` as a local Path: plain paths as they are, URIs through pyarrow's filesystems
    (``file:///...``). The manifest is renamed atomically, so other filesystems (object
    stores) must be mounted (s3fs, gcsfuse, a shared NFS path) and given by their mount path."""
    s = str(path)
    if isinstance(path, Path) or "://" not in s:
        return Path(path)
    from pyarrow import fs as pafs

    try:
        filesystem, inner = pafs.FileSystem.from_uri(s)
    except (pa.ArrowException, ValueError) as e:
        raise StageError(f"{s}: not a path pyarrow can open ({e}). Fix: give a local path or "
                         "a file:// URI.") from e
    if not isinstance(filesystem, pafs.LocalFileSystem):
        raise StageError(f"{s}: sharded scoring needs a POSIX path (its shard manifest is "
                         f"renamed atomically), not {filesystem.type_name}. Fix: mount the "
                         "bucket (s3fs, gcsfuse, NFS) and give the mount path.")
    return Path(inner)


def list_parquet(path: str | Path) -> list[Path]:
    """The Parquet files of ``path`` (one file, or a folder's ``*.parquet`` in name order)."""
    p = local_path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.glob("*.parquet") if not f.name.startswith((".", "_")))
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
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    return ShardPlan([str(f.resolve()) for f in files], rows, [f.stat().st_size for f in files],
                     int(shard_size), list(aspects))


def read_rows(plan: ShardPlan, start: int, stop: int, columns: Sequence[str]) -> pd.DataFrame:
    """Rows [start, stop) of the concatenated input files, only ``columns``; reads just the row
    groups that overlap the range, in record batches (memory ~ one shard)."""
    pieces: list[pa.Table] = []
    offset = 0
    for f, n in zip(plan.files, plan.rows_per_file):
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            pieces.append(_read_file_range(Path(f), lo - offset, hi - offset, columns))
        offset += n
        if offset >= stop:
            break
    if not pieces:
        return pd.DataFrame({c: [] for c in columns})
    return pa.concat_tables(pieces).to_pandas()


def _read_file_range(path: Path, lo: int, hi: int, columns: Sequence[str]) -> pa.Table:
    pf = pq.ParquetFile(path)
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


def _check_plan(out_dir: Path, plan: ShardPlan) -> None:
    """Write the plan, or refuse to resume a run made with a different one."""
    f = out_dir / PLAN_FILE
    if f.exists():
        old = json.loads(f.read_text())
        if old != asdict(plan):
            diff = [k for k in old if old.get(k) != asdict(plan).get(k)]
            raise StageError(f"{out_dir} holds a partial scoring run with a different {diff}. "
                             f"Fix: use another output folder, or delete {out_dir} to start over.")
    else:
        write_json(f, asdict(plan))


# ----------------------------------------------------------------------------- pass 1: gaps
def score_shard(plan: ShardPlan, index: int, gaps_fn: GapsFn, out_dir: str | Path,
                columns: Sequence[str] = SCORER_COLUMNS, split: str | None = "train",
                margin_fn: GapsFn | None = None) -> int:
    """Score one shard and write its part atomically; returns rows written (0 if it existed)."""
    path = Path(out_dir) / GAPS_DIR / part_name(index)
    if path.exists():
        return 0
    start, stop = plan.bounds(index)
    cols = list(dict.fromkeys(list(columns) + (["split"] if split else [])))
    df = read_rows(plan, start, stop, cols)
    if split:  # the selection pool is the train split; the test split is never scored
        df = df[df["split"] == split].drop(columns="split").reset_index(drop=True)
    table = gaps_frame(df, gaps_fn, plan.aspects, margin_fn)
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
    return len(table)


def pending_shards(plan: ShardPlan, out_dir: str | Path) -> list[int]:
    d = Path(out_dir) / GAPS_DIR
    return [i for i in range(plan.n_shards) if not (d / part_name(i)).exists()]


def prepare(pairs_path: str | Path, aspects: Sequence[str], out_dir: str | Path,
            shard_size: int) -> ShardPlan:
    """Plan the shards, pin the plan in ``out_dir`` and clear temp files of a killed run."""
    out_dir = local_path(out_dir)
    plan = plan_shards(pairs_path, shard_size, aspects)
    (out_dir / GAPS_DIR).mkdir(parents=True, exist_ok=True)
    _check_plan(out_dir, plan)
    for folder in (out_dir, out_dir / GAPS_DIR, out_dir / PD_DIR):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # left by a SIGKILL between write and rename
    return plan


def score_sharded(pairs_path: str | Path, gaps_fn: GapsFn, aspects: Sequence[str],
                  out_dir: str | Path, shard_size: int = 100_000,
                  columns: Sequence[str] = SCORER_COLUMNS, split: str | None = "train",
                  margin_fn: GapsFn | None = None, progress: bool = False) -> dict:
    """Pass 1 in this process: score every missing shard. Returns counts for the manifest."""
    out_dir = local_path(out_dir)
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
def gap_parts(out_dir: str | Path) -> list[Path]:
    return sorted((Path(out_dir) / GAPS_DIR).glob("part-*.parquet"))


def load_gaps(out_dir: str | Path, aspects: Sequence[str]) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """(delta (N, K) float64, label (N,) int64, part row offsets) from the gap parts, reading
    only the gap columns and the dictionary-encoded aspect column."""
    parts = gap_parts(out_dir)
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    delta = np.empty((int(offsets[-1]), len(aspects)), dtype=np.float64)
    label = np.empty(int(offsets[-1]), dtype=np.int64)
    cols = [gap_col(a) for a in aspects]
    for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
        t = pq.read_table(p, columns=cols + ["aspect"], read_dictionary=["aspect"])
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
    out_dir = local_path(out_dir)
    if (out_dir / GAPS_DIR).exists() and pending_shards(_load_plan(out_dir), out_dir):
        raise StageError(f"{out_dir}: pass 1 is incomplete; run score_sharded first.")
    delta, label, offsets = load_gaps(out_dir, aspects)
    check_gaps(delta, list(aspects), np.arange(len(delta)), "row of the pair table")
    q = normaliser(delta, label, gamma)
    ptp = [np.inf, -np.inf]  # PD range over all parts, for the constant-PD check
    for p, lo, hi in zip(gap_parts(out_dir), offsets[:-1], offsets[1:]):
        keep = pd_frame(pq.read_table(p).to_pandas(), aspects, q, label[lo:hi], weights)
        if len(keep):
            ptp = [min(ptp[0], keep["pd"].min()), max(ptp[1], keep["pd"].max())]
        with atomic_path(out_dir / PD_DIR / p.name) as tmp:
            pq.write_table(pa.Table.from_pandas(keep, preserve_index=False), tmp)
    if offsets[-1] > 1:
        check_pd(np.array(ptp))
    qd = {a: float(q[c]) for c, a in enumerate(aspects)}
    write_json(out_dir / Q_FILE, {"gamma": gamma, "q": qd, "n_scored": int(offsets[-1])})
    return qd


def _load_plan(out_dir: Path) -> ShardPlan:
    return ShardPlan(**json.loads((out_dir / PLAN_FILE).read_text()))


def read_scores(out_dir: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The whole PD score table (for small data and tests); large runs stream the parts."""
    parts = sorted((local_path(out_dir) / PD_DIR).glob("part-*.parquet"))
    return pd.concat([pq.read_table(p, columns=columns).to_pandas() for p in parts],
                     ignore_index=True)
