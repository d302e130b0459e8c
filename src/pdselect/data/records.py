"""The per-format record iterators behind :func:`loading.iter_records`: one file's bytes ->
``(file, line, record)``.

    for file, line, rec in _iter_jsonl(path, data, cfg, rejects, _Budget(cfg.max_rows)):
        ...

JSONL (a record per line), a JSON list (walked element by element so each record knows the
line it starts on), CSV/TSV (keyed by the header, every value a string) and Parquet (the
1-based row number as the line). Each takes from a :class:`_Budget` (``data.max_rows``): the
records past it are only counted. A bad line is rejected with its reason (or raises with
``cfg.strict``); a problem that breaks the rest of the file raises :class:`InputError`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .formats import DECODER, has_surrogates

Raw = tuple[str, int, dict[str, Any]]  # (file, 1-based line, record)
_STRICT_FIX = "fix or remove that line, or set data.strict=false to reject bad lines instead"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DEEP = "JSON nested too deeply to parse"
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a 10 MB response is one legal CSV cell


class _Budget:
    """``max_rows`` raw records may be read; the ones past it are only counted (``over``)."""

    def __init__(self, limit: int | None):
        self.left, self.over = limit, 0

    @property
    def spent(self) -> bool:
        return self.left == 0

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left > 0:
            self.left -= 1
            return True
        self.over += 1
        return False


def _line_of(data: bytes | str, pos: int) -> int:
    return data.count(b"\n" if isinstance(data, bytes) else "\n", 0, pos) + 1


def _bad_line(file: Path, line: int, reason: str, text: Any, cfg: DataConfig,
              rejects: RejectLog) -> None:
    if cfg.strict:
        raise InputError(str(file), reason, line=line, expected="one JSON object per line "
                         "in UTF-8", fix=_STRICT_FIX)
    rejects.add(reason, file=str(file), line=line, record=text)


def _parse_line(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why it is not one JSON value)."""
    try:
        return DECODER.decode(text), None
    except RecursionError:
        return None, _DEEP
    except json.JSONDecodeError as e:
        return None, ("malformed JSON: data after the record (two records on one line?)"
                      if e.msg == "Extra data" else f"malformed JSON|{e}")


def _iter_jsonl(file: Path, data: bytes, cfg: DataConfig, rejects: RejectLog,
                budget: _Budget) -> Iterator[Raw]:
    first = True
    lines = data.split(b"\n")
    for no, raw in enumerate(lines, 1):
        if not raw.strip() or not budget.take():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _bad_line(file, no, "not UTF-8", f"byte {raw[e.start:e.start + 1]!r} at column "
                      f"{e.start + 1}: " + raw.decode("utf-8", "replace"), cfg, rejects)
            continue
        rec, why = _parse_line(text)
        if why is not None:
            if why.startswith("malformed JSON|"):
                last = no == len(lines) or not any(x.strip() for x in lines[no:])
                why, detail = ("malformed JSON (truncated last line?)" if last
                               else "malformed JSON"), why.split("|", 1)[1] + ": "
            else:
                detail = ""
            _bad_line(file, no, why, detail + text[:2000], cfg, rejects)
            continue
        if _SURROGATE_ESCAPE.search(text) and has_surrogates(rec):
            _bad_line(file, no, "invalid Unicode (lone surrogate escape)", text, cfg, rejects)
            continue
        if not isinstance(rec, dict):
            if first:  # the file's shape is wrong, not one line
                raise InputError(str(file), f"records are {type(rec).__name__}, not objects",
                                 line=no, expected="one JSON object {...} per line",
                                 fix="write each record as a JSON object with named fields")
            _bad_line(file, no, "record is not a JSON object", text, cfg, rejects)
            continue
        first = False
        yield str(file), no, rec


def _iter_json_list(file: Path, data: bytes, cfg: DataConfig, rejects: RejectLog,
                    budget: _Budget) -> Iterator[Raw]:
    """Walk the list element by element with ``raw_decode`` so each record knows its line."""
    try:
        text, bad_bytes = data.decode("utf-8"), False
    except UnicodeDecodeError:  # keep going; the records holding the bad bytes are rejected
        text, bad_bytes = data.decode("utf-8", errors="surrogateescape"), True
    pos, line, n = text.index("[") + 1, 1, 0
    line += text.count("\n", 0, pos)

    def fail(at: int, problem: str, fix: str) -> InputError:
        return InputError(str(file), problem, line=_line_of(text, at),
                          expected="a valid JSON list [{...}, {...}]", fix=fix)

    while True:
        start = _skip(text, pos)
        if n and start < len(text) and text[start] not in ",]":
            raise fail(start, "expected ',' or ']' after the record that ends before here",
                       "add the missing comma between records")
        if n and start < len(text) and text[start] == ",":
            start = _skip(text, start + 1)  # a trailing comma before ']' is tolerated
        if start >= len(text):
            raise fail(len(text), "JSON list is not closed (file truncated?)",
                       "complete the list with ']' (or re-export the file)")
        if text[start] == "]":
            break
        line += text.count("\n", pos, start)
        try:
            rec, end = DECODER.raw_decode(text, start)
        except RecursionError:
            raise fail(start, _DEEP + " (record starting here)", "flatten the records") from None
        except json.JSONDecodeError as e:  # one bad element breaks the rest of the list
            raise InputError(str(file), f"malformed JSON in the record starting here: {e.msg} "
                             f"(parser stopped at line {e.lineno}, column {e.colno})", line=line,
                             expected="a valid JSON list", fix="repair the file, or convert "
                             "it to JSONL so bad lines can be skipped one by one") from e
        n += 1
        if budget.take():
            yield from _list_element(file, line, rec, text[start:end], n, bad_bytes, cfg,
                                     rejects)
        line += text.count("\n", start, end)
        pos = end
    rest = text[start + 1:]
    if rest.strip():
        at = start + 1 + len(rest) - len(rest.lstrip())
        raise fail(at, f"data after the top-level JSON list: {rest.lstrip()[:40]!r}",
                   "remove what follows the closing ']' (two lists? merge them into one)")


def _list_element(file: Path, line: int, rec: Any, src: str, n: int, bad_bytes: bool,
                  cfg: DataConfig, rejects: RejectLog) -> Iterator[Raw]:
    if bad_bytes and has_surrogates(rec) and not _SURROGATE_ESCAPE.search(src):
        _bad_line(file, line, "not UTF-8", repr(rec)[:500], cfg, rejects)
    elif _SURROGATE_ESCAPE.search(src) and has_surrogates(rec):
        _bad_line(file, line, "invalid Unicode (lone surrogate escape)", src, cfg, rejects)
    elif not isinstance(rec, dict):
        if n == 1:
            raise InputError(str(file), f"list elements are {type(rec).__name__}, not "
                             "objects", line=line, expected="a list of JSON objects",
                             fix="write each record as a JSON object with named fields")
        _bad_line(file, line, "record is not a JSON object", src, cfg, rejects)
    else:
        yield str(file), line, rec


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _iter_csv(file: Path, data: bytes, delim: str, cfg: DataConfig, rejects: RejectLog,
              budget: _Budget) -> Iterator[Raw]:
    """One record per row, keyed by the header (line 1); every value is a string."""
    text = data.decode("utf-8", errors="surrogateescape")  # bad bytes: the row is rejected
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader, None)
        if header is None:
            return
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes or not all(h.strip() for h in header):
            raise InputError(str(file), "the header has " + (
                f"duplicate column names {dupes}" if dupes else "an empty column name"),
                line=1, expected="unique, non-empty column names in the first line",
                fix="rename the columns in the header line")
        prev = reader.line_num
        for row in reader:
            no, prev = prev + 1, reader.line_num
            if not any(v.strip() for v in row) or not budget.take():
                continue
            if len(row) != len(header):
                _bad_line(file, no, f"row has {len(row)} fields, the header {len(header)}",
                          delim.join(row)[:2000], cfg, rejects)
            elif has_surrogates(row):
                _bad_line(file, no, "not UTF-8", delim.join(row).encode(
                    "utf-8", "surrogateescape").decode("utf-8", "replace"), cfg, rejects)
            else:
                yield str(file), no, dict(zip(header, row))
    except csv.Error as e:
        raise InputError(str(file), f"malformed {'CSV' if delim == ',' else 'TSV'} ({e})",
                         line=reader.line_num, expected="RFC 4180 quoting",
                         fix="quote fields holding the delimiter, quotes or newlines") from e


def _iter_parquet(file: Path, budget: _Budget) -> Iterator[Raw]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(str(file), f"not a readable Parquet file ({e})", field="data.path",
                         expected="a Parquet file", fix="re-export the file") from e
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            if budget.spent:
                break
            for rec in batch.to_pylist():
                row += 1
                if budget.take():
                    yield str(file), row, rec
    except Exception as e:  # a corrupt page, invalid UTF-8 in a string column, I/O error
        raise InputError(str(file), f"Parquet file unreadable after row {row} "
                         f"({type(e).__name__}: {str(e)[:300]})", line=row + 1,
                         expected="a Parquet file", fix="re-export the file") from e
    if budget.spent:
        budget.over += pf.metadata.num_rows - row
