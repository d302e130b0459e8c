"""``pdselect validate``: check a config and its input without training anything.

Reads the first rows (or every row with ``full=True``) through the configured reader, then
builds the aggregated pairs in memory, so every error the real run would hit in ingest or
aggregate (schema, bad rows, an aspect with too few pairs, a conflict level the data cannot
support) is found in seconds. Nothing is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import RunConfig
from .errors import PDSelectError
from .rejects import RejectLog

PREVIEW_ROWS = 200


@dataclass
class ValidationReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append("ERROR: " + line)

    def render(self) -> str:
        head = "validation passed" if self.ok else "validation FAILED"
        return "\n".join([head] + ["  " + ln for ln in self.lines])


def validate(cfg: RunConfig, full: bool = False) -> ValidationReport:
    """Config is already validated by ``load_config``; here the data is checked against it."""
    from .aggregate import aggregate, from_pairs_input
    from .data import PairsInput, read_source

    rep = ValidationReport()
    rep.add(f"config: ok (source={cfg.data.source}, selector={cfg.select.method}, "
            f"budget={cfg.select.budget_count or cfg.select.budget})")
    data_cfg = cfg.data if full else dataclasses.replace(
        cfg.data, max_rows=min(cfg.data.max_rows or PREVIEW_ROWS, PREVIEW_ROWS))
    rejects = RejectLog("ingest")
    try:
        got = read_source(data_cfg, rejects)
    except PDSelectError as e:
        rep.fail(str(e))
        return rep
    scope = "all rows" if full else f"first {data_cfg.max_rows} records"
    rep.rejects = rejects.counts()
    if isinstance(got, PairsInput):
        rep.add(f"input ({scope}): {len(got.df)} pairs, aspects {got.aspects}")
    else:
        rep.add(f"input ({scope}): {len(got.df)} responses, {got.df['input_id'].nunique()} "
                f"inputs, aspects {got.aspects}, overall {'yes' if got.has_overall else 'no'}")
    for reason, n in rejects.counts().items():
        rep.add(f"  would reject {n}: {reason}")
    agg_rejects = RejectLog("aggregate")
    try:
        if isinstance(got, PairsInput):
            pairs = from_pairs_input(got.df, cfg.aggregate, cfg.seed, agg_rejects)
        else:
            pairs = aggregate(got, cfg.aggregate, cfg.seed, agg_rejects)
    except PDSelectError as e:
        msg = str(e)
        if not full:
            msg += " (checked on a preview; run with --full to check every row)"
        rep.fail(msg)
        return rep
    train = pairs[pairs["split"] == "train"]
    rep.add(f"pairs: {len(pairs)} ({len(train)} train), per aspect "
            f"{train['aspect'].value_counts().sort_index().to_dict()}")
    for reason, n in agg_rejects.counts().items():
        rep.add(f"  aggregate would drop {n}: {reason}")
    return rep
