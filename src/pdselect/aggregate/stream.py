"""The aggregate stage in bounded memory: pairs built from chunks of whole inputs, written in
row groups, identical to the one-shot :func:`pairs.aggregate` (same rows, order, labels,
pair_ids and rejects).

    plan = plan_rated(rated_path, meta, cfg, seed, rejects, parts_dir)
    check_pairs(cfg, plan.light, aspects)   # the text-free columns of the final pair table
    plan.write(out / "pairs.parquet")

Why the result does not depend on the chunking: :func:`pairs.build_pairs` enumerates pairs by
(input size, input_id) and draws its random numbers in that order. The chunks are contiguous
runs of inputs in exactly that order, and one :class:`pairs.PairDraws` carries the random
streams across them, so every stream is consumed as in one call. The global steps (split by
input, conflict level, aspect counts) run on the text-free columns of all pairs; texts live
only in one chunk at a time (pass 1 writes each chunk's pairs to a part, pass 2 copies the
parts, filtered and with their split, into the pair table).

Falls back to one chunk (the whole table, as before) where the equality could not hold: an
aspect without a scale (its scale would be the min-max of the rows kept) or rows the
well-formedness rules drop (they would change an input's size, hence the order; the readers
already drop such rows, so this only happens for tables built another way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..config import AggregateConfig
from ..data.rejects import RejectLog
from ..data.schema import PAIR_BASE, RatedTable
from ..errors import StageError
from ..run.artifacts import remove_tree
from .pairs import (DUPLICATE_TEXT, REUSED_INPUT_ID, SINGLE_RESPONSE, PairDraws,
                    apply_conflict_level, build_pairs, check_aspect_counts, holdout_rule,
                    split_by_input)

CHUNK_INPUTS = 20_000          # inputs per chunk: ~80k responses, ~120k pairs of texts
TEXT_COLUMNS = ["input", "chosen", "rejected", "chosen_id", "rejected_id"]
_WELL_FORMED = (REUSED_INPUT_ID, DUPLICATE_TEXT)
_SINGLE = SINGLE_RESPONSE


class _NotWellFormed(Exception):
    """A chunk dropped rows: only the one-shot order is the reference then."""


def input_chunks(input_ids: np.ndarray, chunk_inputs: int) -> list[np.ndarray]:
    """Input ids in build_pairs' pair order (size, then id), cut into runs of ``chunk_inputs``."""
    # object strings: astype(str) would make a fixed-width array sized by the longest id
    as_text = np.array([str(x) for x in input_ids], dtype=object)
    ids, counts = np.unique(as_text, return_counts=True)                # sorted by id
    order = np.lexsort((np.arange(len(ids)), counts))                   # by size, then id
    return [ids[order[i:i + chunk_inputs]] for i in range(0, len(ids), max(1, chunk_inputs))]


@dataclass
class Plan:
    """Pass 1's result: the final pair table's text-free columns and the parts to copy."""

    light: pd.DataFrame          # final rows (split set, conflict level applied), no texts
    parts: list[Path]
    part_rows: list[int]
    kept: np.ndarray             # global row numbers (over the parts) that stay
    columns: list[str]

    def write(self, path: Path, row_group_size: int = 65_536) -> int:
        """Pass 2: the parts' kept rows with their split, into one Parquet file."""
        from ..run.artifacts import parquet_appender

        # converted as the one-shot path converts it (pandas -> Arrow), so the types match too
        split = pa.Table.from_pandas(self.light[["split"]], preserve_index=False)["split"]
        n, start = 0, 0
        with parquet_appender(path) as out:
            for part, rows in zip(self.parts, self.part_rows):
                lo, hi = np.searchsorted(self.kept, [start, start + rows])
                t = pq.read_table(part).take(pa.array(self.kept[lo:hi] - start))
                t = t.set_column(t.schema.get_field_index("split"), "split",
                                 split.slice(lo, hi - lo)).select(self.columns)
                out.append(t, row_group_size=row_group_size)
                n, start = n + t.num_rows, start + rows
        remove_tree(self.parts[0].parent)  # refuses links (issue 17)
        return n


def _chunk_pairs(path: Path, ids: np.ndarray, meta: dict, cfg: AggregateConfig, seed: int,
                 draws: PairDraws, one_of_many: bool) -> tuple[pd.DataFrame, RejectLog]:
    table = ds.dataset(path).to_table(filter=pc.field("input_id").isin(pa.array(ids)))
    rated = RatedTable(table.to_pandas(), meta["aspects"],
                       {a: tuple(v) for a, v in meta["scales"].items()},
                       meta["has_overall"], meta["source"])
    log = RejectLog("aggregate")
    pairs = build_pairs(rated, cfg, seed, log, draws)
    if one_of_many and any(item["reason"] in _WELL_FORMED for item in log.items):
        raise _NotWellFormed
    return pairs, log


def _merge_rejects(logs: list[RejectLog], into: RejectLog) -> None:
    """The chunks' rejects in one-shot order: ill-formed rows, single-response inputs (all in
    the first chunks, by id), the per-input cap (one count), then tied pairs (in pair order)."""
    items = [it for lg in logs for it in lg.items]
    is_cap = [it["reason"].startswith("over max_pairs_per_input") for it in items]
    formed = [it for it in items if it["reason"] in _WELL_FORMED]  # only with one chunk
    single = [it for it in items if it["reason"] == _SINGLE]
    rest = [it for it, c in zip(items, is_cap)
            if not c and it["reason"] != _SINGLE and it["reason"] not in _WELL_FORMED]
    cap = [it for it, c in zip(items, is_cap) if c]
    if cap:
        cap = [{**cap[0], "count": sum(it["count"] for it in cap)}]
    for it in formed + single + cap + rest:
        into.add(it["reason"], n=it["count"],
                 **{k: v for k, v in it.items() if k not in ("stage", "reason", "count")})


def plan_rated(path: Path, meta: dict, cfg: AggregateConfig, seed: int, rejects: RejectLog,
               parts_dir: Path, chunk_inputs: int = CHUNK_INPUTS) -> Plan:
    """Pass 1 over ``path`` (the ingest stage's rated.parquet) in chunks of whole inputs."""
    if not meta["has_overall"] and set(meta["aspects"]) - set(meta["scales"]):
        chunk_inputs = 1 << 62  # unscaled aspects: the one-shot min-max (module docstring)
    ids = pq.read_table(path, columns=["input_id"])["input_id"].to_numpy(zero_copy_only=False)
    try:
        return _pass1(path, meta, cfg, seed, rejects, parts_dir, input_chunks(ids, chunk_inputs))
    except _NotWellFormed:
        remove_tree(parts_dir)
        return _pass1(path, meta, cfg, seed, rejects, parts_dir, input_chunks(ids, 1 << 62))


def _pass1(path, meta, cfg, seed, rejects, parts_dir: Path, chunks) -> Plan:
    parts_dir.mkdir(parents=True, exist_ok=True)
    draws, logs, parts, rows, light, schema = PairDraws(seed), [], [], [], [], None
    for i, ids in enumerate(chunks):
        pairs, log = _chunk_pairs(path, ids, meta, cfg, seed, draws, len(chunks) > 1)
        logs.append(log)
        if pairs.empty:
            continue
        t = pa.Table.from_pandas(pairs, preserve_index=False)
        t = t if schema is None else t.cast(schema)  # an all-NaN chunk keeps the first's types
        schema = t.schema
        parts.append(parts_dir / f"part-{i:05d}.parquet")
        pq.write_table(t, parts[-1])
        rows.append(len(pairs))
        light.append(pairs.drop(columns=TEXT_COLUMNS))
    _merge_rejects(logs, rejects)
    if not light:
        raise StageError("no response pair could be formed (every input has one response, or "
                         "every pair is tied). Check the input data and data.aspects.")
    pairs = pd.concat(light, ignore_index=True)
    columns = PAIR_BASE + [c for c in pairs.columns if c not in PAIR_BASE and
                           c not in TEXT_COLUMNS]
    pairs = split_by_input(pairs, holdout_rule(cfg, meta["has_overall"], meta["source"])[0], seed)
    pairs["_row"] = np.arange(len(pairs))
    if cfg.conflict_level is not None:
        pairs = apply_conflict_level(pairs, cfg.conflict_level, seed, rejects)
    check_aspect_counts(pairs, list(meta["aspects"]), cfg.min_pairs_per_aspect)
    kept = pairs.pop("_row").to_numpy()
    return Plan(pairs, parts, rows, kept, columns)
