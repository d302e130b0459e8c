"""Counting and writing aside what a stage skips: nothing is dropped silently.

    log = RejectLog("ingest")
    log.add("empty response", file="a.jsonl", line=12, field="response", record=row)
    log.counts()   # {"empty response": 1}
    log.write(run_dir / "ingest" / "rejects.jsonl")
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from ..run.artifacts import write_jsonl

log = logging.getLogger(__name__)
_MAX_RECORD_CHARS = 2000  # keep rejects files readable: long records are cut


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _safe(value: Any) -> Any:
    """``value`` as rejects.jsonl can always hold it: JSON-serialisable, valid UTF-8, short.

    Records come from hostile input: lone surrogates, nesting deep enough to break
    ``json.dumps``, 10 MB strings or huge numbers must not crash the stage that writes them."""
    if isinstance(value, (bool, type(None))) or (isinstance(value, (int, float))
                                                 and abs(value) < 1e300):
        return value
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr)
            if len(text) <= _MAX_RECORD_CHARS and _encodable(text):
                return value  # small and clean: keep its structure
        except (ValueError, TypeError, RecursionError):  # deep nesting, >4300-digit ints
            text = f"<unwritable {type(value).__name__}>"
    if len(text) > _MAX_RECORD_CHARS:
        text = text[:_MAX_RECORD_CHARS] + "...[cut]"
    if not _encodable(text):  # lone surrogates: show them escaped, as JSON would
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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
            item["record"] = _safe(record)
        item.update({k: _safe(v) for k, v in extra.items()})
        if file is not None and not _encodable(item["file"]):
            item["file"] = _safe(item["file"])
        self.items.append(item)

    def counts(self) -> dict[str, int]:
        return dict(sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def summary(self, n: int = 5) -> str:
        """The reasons with their counts and the first file:line of each: what an error raised
        before any rejects file is written can show instead of "see the rejects file"."""
        first: dict[str, str] = {}
        for it in self.items:
            where = (f"{it['file']}:{it['line']}" if it.get("line") is not None
                     else it.get("file") or "")
            first.setdefault(it["reason"], where)
        parts = [f"{reason!r} x{c}" + (f" (first at {first[reason]})" if first.get(reason)
                                       else "") for reason, c in list(self.counts().items())[:n]]
        more = len(self.counts()) - n
        return "; ".join(parts) + (f"; and {more} other reasons" if more > 0 else "")

    def extend(self, other: "RejectLog") -> None:
        self.items += other.items
        self._counts.update(other._counts)

    def write(self, path: str | Path) -> None:
        write_jsonl(path, self.items)
        if self.total:
            log.info("%s: %d rejected (%s) -> %s", self.stage, self.total,
                     ", ".join(f"{k}: {v}" for k, v in self.counts().items()), path)
