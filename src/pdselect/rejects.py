"""Counting and writing aside what a stage skips: nothing is dropped silently.

    log = RejectLog("ingest")
    log.add("empty response", file="a.jsonl", line=12, field="response", record=row)
    log.counts()   # {"empty response": 1}
    log.write(run_dir / "ingest" / "rejects.jsonl")
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from .artifacts import write_jsonl

log = logging.getLogger(__name__)
_MAX_RECORD_CHARS = 2000  # keep rejects files readable: long records are cut


class RejectLog:
    def __init__(self, stage: str):
        self.stage = stage
        self.items: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()

    def add(self, reason: str, *, file: str | None = None, line: int | None = None,
            field: str | None = None, record: Any = None, n: int = 1, **extra) -> None:
        """Record ``n`` rejected items sharing one reason (``n`` > 1 for bulk drops)."""
        self._counts[reason] += n
        item = {"stage": self.stage, "reason": reason, "count": n}
        if file is not None:
            item["file"] = str(file)
        if line is not None:
            item["line"] = line
        if field is not None:
            item["field"] = field
        if record is not None:
            text = repr(record) if not isinstance(record, (dict, list, str)) else record
            if isinstance(text, str) and len(text) > _MAX_RECORD_CHARS:
                text = text[:_MAX_RECORD_CHARS] + "...[cut]"
            item["record"] = text
        item.update(extra)
        self.items.append(item)

    def counts(self) -> dict[str, int]:
        return dict(sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def extend(self, other: "RejectLog") -> None:
        self.items += other.items
        self._counts.update(other._counts)

    def write(self, path: str | Path) -> None:
        write_jsonl(path, self.items)
        if self.total:
            log.info("%s: %d rejected (%s) -> %s", self.stage, self.total,
                     ", ".join(f"{k}: {v}" for k, v in self.counts().items()), path)
