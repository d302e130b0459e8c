"""Ingest: read a configured source into the canonical RatedTable (or PairsInput).

    from pdselect.data import read_source
    table = read_source(cfg.data, RejectLog("ingest"))

One small module per source; :data:`READERS` maps ``DataConfig.source`` to its reader. Row
rules (missing/invalid ratings, empty responses, duplicates, strict mode) live in ``rows.py``;
file formats, line numbers and the hub fallback in ``loading.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .schema import RatedTable
from .generic import read_generic
from .helpsteer2 import read_helpsteer2
from .helpsteer3 import read_helpsteer3
from .mqm import read_mqm
from .pairs import PairsInput, read_pairs
from .summeval import read_summeval
from .ultrafeedback import read_ultrafeedback
from .usr import read_usr_persona_chat, read_usr_topical_chat

Reader = Callable[[DataConfig, RejectLog], Union[RatedTable, PairsInput]]

READERS: dict[str, Reader] = {
    "usr_topical_chat": read_usr_topical_chat,
    "usr_persona_chat": read_usr_persona_chat,
    "summeval_op": read_summeval,
    "ultrafeedback": read_ultrafeedback,
    "helpsteer2": read_helpsteer2,
    "helpsteer3": read_helpsteer3,
    "generic": read_generic,
    "pairs": read_pairs,
    "mqm": read_mqm,
    "mqm_ted_zhen": read_mqm,
    "mqm_ted_ende": read_mqm,
}


def read_source(cfg: DataConfig, rejects: RejectLog,
                spill_to: str | Path | None = None) -> RatedTable | PairsInput:
    """Read ``cfg.source`` from ``cfg.path`` (or the bundled copy); bad rows go to ``rejects``.

    ``spill_to``: a Parquet path the rated table is streamed to while reading (data/spill.py;
    the ingest stage's ``rated.parquet``). The returned table then has ``path`` set and its
    ``df`` holds ids and ratings only. A reader that needs its texts after reading returns the
    whole table as usual (``path`` None): the caller writes it."""
    reader = READERS.get(cfg.source)
    if reader is None:
        raise InputError(cfg.path or "<data.source>", f"unknown source {cfg.source!r}",
                         field="data.source", expected="one of " + ", ".join(READERS),
                         fix="set data.source to a known reader")
    if spill_to is None:
        return reader(cfg, rejects)
    from .spill import spill_to as spilling

    with spilling(spill_to):
        return reader(cfg, rejects)


__all__ = ["READERS", "PairsInput", "read_source"]
