"""Readers stream their responses to the ingest stage's Parquet file instead of holding them.

At a million responses the texts are gigabytes; a reader's rules (duplicates, reused ids) need
only ids and digests of what it has seen. So while ``spill_to(path)`` is active (the ingest
stage sets it around ``read_source``), every :class:`~pdselect.data.rows.TableBuilder` that
allows it writes its accepted rows in batches of ``SPILL_ROWS`` to ``path`` and keeps only the
ids and ratings; its RatedTable then has ``path`` set and a ``df`` without the text columns.
The file appears under its name only when the reader finished (temporary name, renamed), and
reads back as the table the builder would have returned in memory (tests/test_bounded_memory.py).

Why a context variable rather than a reader argument: the eight readers build their
TableBuilder themselves; the ingest stage is the one caller that wants the file, and the
others (validate, the experiment grid, the Python API) keep getting the whole table.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

SPILL_ROWS = 50_000  # responses per row group: ~150 MB of texts at 3 KB a response
_TARGET: ContextVar[Path | None] = ContextVar("pdselect_spill_target", default=None)


@contextmanager
def spill_to(path: str | Path) -> Iterator[Path]:
    """Readers run inside this block write their table to ``path`` (see the module doc). A
    reader that fails leaves no file and no temporary behind."""
    path = Path(path)
    token = _TARGET.set(path)
    try:
        yield path
    finally:
        _TARGET.reset(token)
        temp_name(path).unlink(missing_ok=True)


def spill_target() -> Path | None:
    return _TARGET.get()


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.spill.tmp")
