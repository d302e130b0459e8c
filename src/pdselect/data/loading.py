"""Turn a path (file, folder or Hugging Face dataset id) into a stream of raw records.

Every reader goes through :func:`iter_records`, so line numbers, encoding problems, malformed
lines and ``max_rows`` are handled once:

    for file, line, record in iter_records(path, cfg, rejects):
        ...   # record is a dict; (file, line) name it in errors and rejects

Line numbers are 1-based and real: for JSONL the line of the record, for a JSON list the line
where the element starts, for Parquet / Hugging Face datasets the 1-based row number.

File-level problems (missing file, wrong top-level type, unreadable Parquet, unreachable hub)
raise :class:`InputError` before any record is yielded. Line-level problems (malformed JSON,
non-UTF-8 bytes, a line that is not an object) are rejected with a reason, or raise when
``cfg.strict`` is set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..errors import InputError
from ..rejects import RejectLog

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".jsonl", ".parquet")
Raw = tuple[str, int, dict[str, Any]]  # (file, 1-based line, record)
_STRICT_FIX = "fix or remove that line, or set data.strict=false to reject bad lines instead"


def resolve_path(cfg: DataConfig, default: Path | None = None) -> str:
    """The path to read: ``cfg.path``, else the bundled ``default``, else an error."""
    if cfg.path:
        return cfg.path
    if default is not None:
        return str(default)
    raise InputError("<data.path>", f"source {cfg.source!r} has no bundled copy",
                     field="data.path", expected="a local JSON/JSONL/Parquet file or folder, "
                     "or a Hugging Face dataset id", fix="set data.path")


def iter_records(path: str | Path, cfg: DataConfig, rejects: RejectLog) -> Iterator[Raw]:
    """Yield ``(file, line, record)`` for every record under ``path``, at most ``cfg.max_rows``
    lines in all (bad lines count: ``max_rows`` bounds the work, not the output)."""
    budget = [cfg.max_rows if cfg.max_rows is not None else -1]
    for file in _files(path):
        yield from _limited(_iter_file(file, cfg, rejects, budget), budget)
        if budget[0] == 0:
            log.info("max_rows=%s reached; stopped reading at %s", cfg.max_rows, file)
            return


def _limited(it: Iterator[Raw], budget: list[int]) -> Iterator[Raw]:
    for raw in it:
        yield raw
        if budget[0] == 0:
            return


def _spend(budget: list[int]) -> bool:
    """Count one raw line against max_rows; False when the budget is already spent."""
    if budget[0] == 0:
        return False
    if budget[0] > 0:
        budget[0] -= 1
    return True


def _files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
        if not files:
            raise InputError(str(p), "folder holds no .json/.jsonl/.parquet files",
                             expected="a folder of JSON/JSONL/Parquet files",
                             fix="point data.path at the data files or their folder")
        return files
    if p.is_file():
        if p.suffix not in SUFFIXES:
            raise InputError(str(p), f"unsupported file type {p.suffix!r}",
                             expected="one of " + ", ".join(SUFFIXES),
                             fix="convert the file to JSONL or Parquet")
        return [p]
    if p.suffix in SUFFIXES or str(path).startswith((".", "/", "~")) or "\\" in str(path):
        raise InputError(str(p), "file not found", expected="an existing local file or folder",
                         fix="check data.path (relative paths start from the working dir)")
    return [_HubId(str(path))]  # type: ignore[list-item]


class _HubId(str):
    """Marks a path that is not local: read with ``datasets.load_dataset``."""


def _iter_file(file: Path, cfg: DataConfig, rejects: RejectLog, budget: list[int]) -> Iterator[Raw]:
    if isinstance(file, _HubId):
        return _iter_hub(str(file), cfg, budget)
    if file.suffix == ".parquet":
        return _iter_parquet(file, budget)
    data = file.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 BOM (Windows editors): not part of the JSON
        data = data[3:]
    head = data.lstrip()[:1]
    if file.suffix == ".json" and head == b"[":
        return _iter_json_list(file, data, cfg, rejects, budget)
    if file.suffix == ".json":
        _check_top_level(file, data)  # returns only for JSONL content saved as .json
    return _iter_jsonl(file, data, cfg, rejects, budget)


def _check_top_level(file: Path, data: bytes) -> None:
    """A .json file that is not a list: fine if it is really JSONL, else name what it is.

    A single object (e.g. ``{"data": [...]}``) is refused rather than guessed into: which key
    holds the records is the user's call."""
    try:
        value = json.loads(data.decode("utf-8", errors="surrogateescape"))
        kind = "a JSON object" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
    except ValueError as e:
        if data.lstrip()[:1] == b"{" and "Extra data" in str(e):
            log.info("%s holds one object per line: reading it as JSONL", file)
            return
        kind = "not valid JSON"
    raise InputError(str(file), f"top level is {kind}", line=1,
                     expected="a JSON list of records, or JSONL (one object per line)",
                     fix="save the records as a list [{...}, ...] or one object per line")


def _bad_line(file: Path, line: int, reason: str, text: Any, cfg: DataConfig,
              rejects: RejectLog) -> None:
    if cfg.strict:
        raise InputError(str(file), reason, line=line, expected="one JSON object per line "
                         "in UTF-8", fix=_STRICT_FIX)
    rejects.add(reason, file=str(file), line=line, record=text)


def _iter_jsonl(file: Path, data: bytes, cfg: DataConfig, rejects: RejectLog,
                budget: list[int]) -> Iterator[Raw]:
    first = True
    lines = data.split(b"\n")
    for no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if not _spend(budget):
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _bad_line(file, no, "not UTF-8", f"byte {raw[e.start:e.start + 1]!r} at column "
                      f"{e.start + 1}: " + raw.decode("utf-8", "replace"), cfg, rejects)
            continue
        try:
            rec = json.loads(text)
        except ValueError as e:
            last = no == len(lines) or not any(x.strip() for x in lines[no:])
            why = "malformed JSON (truncated last line?)" if last else "malformed JSON"
            _bad_line(file, no, why, f"{e}: {text}", cfg, rejects)
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
                    budget: list[int]) -> Iterator[Raw]:
    """Walk the list element by element with ``raw_decode`` so each record knows its line."""
    try:
        text, bad_bytes = data.decode("utf-8"), False
    except UnicodeDecodeError:  # keep going; the records holding the bad bytes are rejected
        text, bad_bytes = data.decode("utf-8", errors="surrogateescape"), True
    dec = json.JSONDecoder()
    pos, line, n = text.index("[") + 1, 1, 0
    line += text.count("\n", 0, pos)
    while True:
        start = _skip(text, pos, ",")
        if start >= len(text) or text[start] == "]":
            return
        line += text.count("\n", pos, start)
        try:
            rec, end = dec.raw_decode(text, start)
        except ValueError as e:  # one bad element breaks the rest of the list
            raise InputError(str(file), f"malformed JSON in the record starting here: {e.msg} "
                             f"(parser stopped at line {e.lineno}, column {e.colno})", line=line,
                             expected="a valid JSON list", fix="repair the file, or convert "
                             "it to JSONL so bad lines can be skipped one by one") from e
        n += 1
        if not _spend(budget):
            return
        if bad_bytes and _has_surrogates(rec):
            _bad_line(file, line, "not UTF-8", repr(rec)[:500], cfg, rejects)
        elif not isinstance(rec, dict):
            if n == 1:
                raise InputError(str(file), f"list elements are {type(rec).__name__}, not "
                                 "objects", line=line, expected="a list of JSON objects",
                                 fix="write each record as a JSON object with named fields")
            _bad_line(file, line, "record is not a JSON object", repr(rec), cfg, rejects)
        else:
            yield str(file), line, rec
        line += text.count("\n", start, end)
        pos = end


def _skip(text: str, pos: int, sep: str) -> int:
    while pos < len(text) and (text[pos].isspace() or text[pos] == sep):
        pos += 1
    return pos


def _has_surrogates(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _iter_parquet(file: Path, budget: list[int]) -> Iterator[Raw]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(str(file), f"not a readable Parquet file ({e})",
                         expected="a Parquet file", fix="re-export the file") from e
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for rec in batch.to_pylist():
            row += 1
            if not _spend(budget):
                return
            yield str(file), row, rec


def _iter_hub(name: str, cfg: DataConfig, budget: list[int]) -> Iterator[Raw]:
    try:
        import datasets

        ds = datasets.load_dataset(name, split=cfg.hf_split)
    except Exception as e:  # offline, unknown id, bad split: all mean "cannot read it here"
        raise InputError(name, f"not a local file, and loading it as a Hugging Face dataset "
                         f"failed: the hub is unreachable or the id/split is wrong "
                         f"({type(e).__name__}: {str(e)[:200]})", field="data.path",
                         expected="a local JSON/JSONL/Parquet file or folder",
                         fix="download the dataset elsewhere and pass the local file as "
                         "data.path") from e
    for row, rec in enumerate(ds, 1):
        if not _spend(budget):
            return
        yield name, row, dict(rec)
