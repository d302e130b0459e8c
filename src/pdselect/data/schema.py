"""The two canonical tables every stage exchanges, and the hidden-column rule.

RatedTable (one row per response; what readers produce)
    input_id : str   stable id of the input (prompt / dialogue context / product)
    input    : str   the input text
    response_id : str  unique within the table
    response : str
    <aspect> : float one column per aspect, the rating (NaN = not rated)
    overall  : float the holistic rating if the source has one, else absent/NaN

PairTable (one row per same-input response pair; what aggregate produces)
    pair_id, input_id, input, chosen, rejected, aspect, split ("train"/"test"),
    chosen_id, rejected_id, len_chosen, len_rejected (characters)
    h_overall_delta   overall(chosen) - overall(rejected)          [hidden]
    h_agrees_overall  1.0 / 0.0 / NaN (overall tie or unknown)    [hidden]
    h_delta__<aspect> rating(chosen) - rating(rejected) per aspect [hidden]

Columns starting with ``h_`` are the evaluation oracle: selection, proxy training and DPO must
never read them. :func:`public_view` is the only door those stages use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HIDDEN_PREFIX = "h_"
DELTA_PREFIX = "h_delta__"
RATED_BASE = ["input_id", "input", "response_id", "response"]
PAIR_BASE = ["pair_id", "input_id", "input", "chosen", "rejected", "aspect", "split",
             "chosen_id", "rejected_id", "len_chosen", "len_rejected"]


@dataclass
class RatedTable:
    """Responses with per-aspect ratings, plus what the reader knows about the scales."""

    df: pd.DataFrame
    aspects: list[str]
    scales: dict[str, tuple[float, float]] = field(default_factory=dict)
    has_overall: bool = False
    source: str = ""
    #: set when the reader streamed the table to this Parquet file (data/spill.py): ``df``
    #: then holds ids and ratings only, without the input / response texts
    path: Path | None = None

    def __post_init__(self):
        need = RATED_BASE if self.path is None else ["input_id", "response_id"]
        missing = [c for c in need + self.aspects if c not in self.df.columns]
        if missing:
            raise ValueError(f"RatedTable is missing columns {missing}")


def public_view(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pair table without hidden (``h_``) columns: what selection and training may see."""
    return pairs[[c for c in pairs.columns if not c.startswith(HIDDEN_PREFIX)]]


def hidden_columns(pairs: pd.DataFrame) -> list[str]:
    return [c for c in pairs.columns if c.startswith(HIDDEN_PREFIX)]


def delta_col(aspect: str) -> str:
    return f"{DELTA_PREFIX}{aspect}"
