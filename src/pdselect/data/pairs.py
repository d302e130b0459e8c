"""Already-paired data, one aspect label per pair: ``prompt``, ``chosen``, ``rejected``,
``aspect`` and an optional ``id``. This is the aggregated dataset D of METHOD.md directly, so
it skips aggregation; with no ratings there is no overall and no oracle.

pair_id = ``id`` if given, else sha1(prompt, chosen, rejected, aspect); input_id = sha1(prompt).
Rows rejected: missing field, empty chosen/rejected ("empty response"), chosen == rejected
after stripping whitespace ("chosen equals rejected"), empty aspect, repeated pair_id
("duplicate pair_id"), a field that is not text ("<field> is not text (...)"; chat-message
lists are rendered as text, see rows.to_text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .loading import iter_records, resolve_path
from .rows import TableBuilder, select_aspects, short_hash, shown

PAIRS_COLUMNS = ["pair_id", "input_id", "input", "chosen", "rejected", "aspect"]


@dataclass
class PairsInput:
    """Pairs read from disk, before splitting/length columns (aggregate adds those)."""

    df: pd.DataFrame  # columns PAIRS_COLUMNS
    aspects: list[str] = field(default_factory=list)
    source: str = "pairs"


def binarized_error(path: str) -> InputError:
    """prompt/chosen/rejected without an aspect: one preference per pair, nothing to diverge."""
    return InputError(path, "a binarized preference set (prompt, chosen, rejected) without a "
                      "per-aspect label: PD needs at least two aspects", field="aspect",
                      expected="an 'aspect' field naming which aspect decided each pair, or "
                      "per-response ratings on two or more aspects (source generic)",
                      fix="use the multi-aspect ratings the pairs were built from (e.g. "
                      "UltraFeedback's per-aspect ratings with source ultrafeedback, not "
                      "ultrafeedback_binarized), or add an aspect per pair")


def read_pairs(cfg: DataConfig, rejects: RejectLog) -> PairsInput:
    path = resolve_path(cfg)
    # The builder is used only for its field checks and reject/strict handling.
    b = TableBuilder(source="pairs", aspects=[], scales={}, has_overall=False,
                     rejects=rejects, strict=cfg.strict)
    rows, ids = [], set()
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, ["prompt", "chosen", "rejected", "aspect"],
                         nullable=("chosen", "rejected", "aspect")):
            continue
        got = b.text_fields(file, line, rec, {"prompt": None, "chosen": "empty response",
                                              "rejected": "empty response",
                                              "aspect": "empty aspect"})
        if got is None:
            continue
        prompt, chosen, rejected, aspect = got
        if chosen.strip() == rejected.strip():
            b.reject("chosen equals rejected", file, line, rec, field="rejected",
                     expected="two different responses (compared whitespace-stripped)")
            continue
        if isinstance(rec.get("id"), (dict, list, bool)):
            b.reject("id is not an id", file, line, rec, field="id",
                     expected="a string or integer id, or no id", value=shown(rec["id"]))
            continue
        pid = str(rec["id"]) if rec.get("id") is not None else short_hash(
            "\x1f".join([prompt, chosen, rejected, aspect]))
        if pid in ids:
            b.reject("duplicate pair_id", file, line, rec, field="id", value=pid)
            continue
        ids.add(pid)
        rows.append([pid, short_hash(prompt), prompt, chosen, rejected, aspect])
    if b.checked["aspect"] and b.absent["aspect"] == b.checked["aspect"] \
            and b.absent["chosen"] < b.checked["chosen"]:
        raise binarized_error(path)
    b.check_schema()
    if not rows:  # no rejects file exists yet when this is raised: say why here (issue 17)
        raise InputError(path, "no usable pairs: every record was rejected: "
                         + rejects.summary(), expected="at least one valid pair",
                         fix="correct the records for the reasons shown (first line of each), "
                         "or set data.strict=true to stop at the first bad record")
    df = pd.DataFrame(rows, columns=PAIRS_COLUMNS)
    present = sorted(df["aspect"].unique())
    aspects = select_aspects(cfg.aspects, present, path)
    if cfg.aspects:
        dropped = int((~df["aspect"].isin(aspects)).sum())
        df = df[df["aspect"].isin(aspects)].reset_index(drop=True)
        if dropped:
            rejects.add("aspect not selected", file=path, field="aspect", n=dropped)
    return PairsInput(df=df, aspects=aspects, source="pairs")
