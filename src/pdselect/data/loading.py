"""Turn a path (file, folder or Hugging Face dataset id) into a stream of raw records.

Every reader goes through :func:`iter_records`, so line numbers, encodings, compression,
malformed lines and ``max_rows`` are handled once:

    for file, line, record in iter_records(path, cfg, rejects):
        ...   # record is a dict; (file, line) name it in errors and rejects

Formats (suffixes in any case): JSON list, JSONL, CSV, TSV (each also ``.gz`` / ``.bz2`` /
``.xz``) and Parquet; see :mod:`formats` for bytes, encodings and numbers. Line numbers are
1-based and real: for JSONL the line of the record, for a JSON list the line where the element
starts, for CSV/TSV the line where the row starts (the header is line 1), for Parquet / Hugging
Face datasets the 1-based row number.

Nothing read is lost without a count:
  * a file in a folder that is not a data file is listed (warning) and counted as rejected
    "unsupported file type (not read)";
  * records beyond ``data.max_rows`` are counted as "not read: beyond data.max_rows=N";
  * a bad line is rejected with its reason (or raises with ``cfg.strict``).

File-level problems (missing or unreadable file, wrong top-level type, data after the top-level
JSON value, UTF-16 without a BOM, corrupt Parquet/gzip, unreachable hub, nesting too deep to
parse) raise :class:`InputError` naming the file (and line) before or while records are
yielded; no other exception escapes the reading of a file.

Here: the path (file, folder, hub id), the dispatch of a file to its format, the hub. The
per-format record iterators (JSONL, JSON list, CSV/TSV, Parquet) and the ``max_rows`` budget
are in :mod:`records`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..config.loading import plain_path
from ..errors import InputError
from .rejects import RejectLog
from .formats import COMPRESSED, DECODER, READABLE, file_format, read_bytes, to_utf8
from .records import (_DEEP, Raw, _Budget, _iter_csv, _iter_json_list, _iter_jsonl,
                      _iter_parquet, _line_of)

log = logging.getLogger(__name__)


def resolve_path(cfg: DataConfig, default: Path | None = None) -> str:
    """The path to read: ``cfg.path``, else the bundled ``default``, else an error."""
    if cfg.path:
        return plain_path(cfg.path)
    if default is not None:
        return str(default)
    raise InputError("<data.path>", f"source {cfg.source!r} has no bundled copy",
                     field="data.path", expected="a local data file or folder "
                     f"({READABLE}), or a Hugging Face dataset id", fix="set data.path")


def iter_records(path: str | Path, cfg: DataConfig, rejects: RejectLog) -> Iterator[Raw]:
    """Yield ``(file, line, record)`` for every record under ``path``, at most ``cfg.max_rows``
    lines in all (bad lines count: ``max_rows`` bounds the work, not the output)."""
    budget = _Budget(cfg.max_rows)
    files = _files(path, rejects)
    seen, rejected = 0, rejects.total
    for file, fmt, comp in files:
        try:
            for raw in _iter_file(file, fmt, comp, cfg, rejects, budget):
                seen += 1
                yield raw
        except RecursionError as e:
            raise InputError(str(file), _DEEP, field="data.path", expected="JSON nested "
                             "at most a few hundred levels", fix="flatten the records") from e
        except (OSError, ValueError, UnicodeError, MemoryError) as e:
            raise InputError(str(file), f"cannot read the file ({type(e).__name__}: "
                             f"{str(e)[:300]})", field="data.path",
                             expected=f"a readable file ({READABLE})",
                             fix="repair or re-export the file") from e
    if not seen and rejects.total == rejected:
        raise InputError(str(path), "holds no records (empty file" + (
            "s" if len(files) > 1 else "") + ", or a CSV/TSV header without rows)",
            field="data.path", expected="at least one record",
            fix="check that data.path points at the data")
    if budget.over:
        log.info("max_rows=%s reached: %d further records not read", cfg.max_rows, budget.over)
        rejects.add(f"not read: beyond data.max_rows={cfg.max_rows}", field="data.max_rows",
                    n=budget.over, file=str(path))


def _files(path: str | Path, rejects: RejectLog) -> list[tuple[Path, str, str | None]]:
    p = Path(plain_path(str(path)))
    try:
        if p.is_dir():
            return _folder(p, rejects)
        is_file = p.is_file()
        not_regular = not is_file and p.exists()
    except OSError as e:
        raise InputError(str(p), f"cannot read ({type(e).__name__}: {e.strerror or e})",
                         field="data.path", expected="a readable file or folder",
                         fix="check its permissions") from e
    if not_regular:  # a FIFO, socket or device: reading a FIFO would block, then stream once
        raise InputError(str(p), f"is not a regular file (a {special_kind(p)})",
                         field="data.path", expected="a regular data file or folder",
                         fix="write the data to a regular file first (e.g. `cat pipe > "
                         "data.jsonl`) and point data.path at it")
    if is_file:
        kind = file_format(p)
        if kind is None:
            shown = "".join(p.suffixes[-2:]) if p.suffix.lower() in COMPRESSED else p.suffix
            raise InputError(str(p), f"unsupported file type {shown!r}",
                             field="data.path", expected=READABLE,
                             fix="convert the file to JSONL, CSV or Parquet")
        return [(p, *kind)]
    if file_format(p) or str(path).startswith((".", "/", "~")) or "\\" in str(path):
        raise InputError(str(p), "file not found", expected="an existing local file or folder",
                         fix="check data.path (relative paths start from the working dir)")
    return [(_HubId(str(path)), "hub", None)]  # type: ignore[list-item]


def _folder(p: Path, rejects: RejectLog) -> list[tuple[Path, str, str | None]]:
    found, skipped = [], []
    for f in sorted(x for x in p.rglob("*") if not x.is_dir()):
        kind = file_format(f) if f.is_file() else None
        if kind is None:
            skipped.append(f)
        else:
            found.append((f, *kind))
    for f in skipped:  # listed and counted, never silently ignored
        rejects.add("unsupported file type (not read)", file=str(f), field="data.path")
    if skipped:
        log.warning("%s: %d file(s) not read (not %s): %s", p, len(skipped), READABLE,
                    ", ".join(str(f.relative_to(p)) for f in skipped[:10])
                    + (" ..." if len(skipped) > 10 else ""))
    if not found:
        listed = ", ".join(str(f.relative_to(p)) for f in skipped[:10]) or "nothing"
        raise InputError(str(p), f"folder holds no data files (found: {listed})",
                         field="data.path", expected=f"a folder of {READABLE} files",
                         fix="point data.path at the data files or their folder, or convert "
                         "them to JSONL, CSV or Parquet")
    return found


def special_kind(p: Path) -> str:
    """What a path that exists but is neither a file nor a folder is."""
    import stat

    mode = p.stat().st_mode
    return ("FIFO (named pipe)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")


def csv_delimiter(file: Path, data: bytes, fmt: str) -> str:
    """Tab for TSV; for CSV a comma, or a semicolon when the header has semicolons and no
    comma (the spreadsheet export of locales with a decimal comma)."""
    if fmt == "tsv":
        return "\t"
    header = data.split(b"\n", 1)[0]
    if header.count(b";") > 0 and header.count(b",") == 0:
        log.info("%s: semicolon-delimited CSV (the header has ';' and no ',')", file)
        return ";"
    return ","


class _HubId(str):
    """Marks a path that is not local: read with ``datasets.load_dataset``."""


def _iter_file(file: Path, fmt: str, comp: str | None, cfg: DataConfig, rejects: RejectLog,
               budget: _Budget) -> Iterator[Raw]:
    if fmt == "hub":
        return _iter_hub(str(file), cfg, budget)
    if fmt == "parquet":
        return _iter_parquet(file, budget)
    data = to_utf8(file, read_bytes(file, comp))
    if fmt in ("csv", "tsv"):
        return _iter_csv(file, data, csv_delimiter(file, data, fmt), cfg, rejects, budget)
    head = data.lstrip()[:1]
    if fmt == "json" and head == b"[":
        return _iter_json_list(file, data, cfg, rejects, budget)
    if fmt == "json":
        _check_top_level(file, data)  # returns only for JSONL content saved as .json
    return _iter_jsonl(file, data, cfg, rejects, budget)


def _check_top_level(file: Path, data: bytes) -> None:
    """A .json file that is not a list: fine if it is really JSONL, else name what it is.

    A single object (e.g. ``{"data": [...]}``) is refused rather than guessed into: which key
    holds the records is the user's call. JSONL means every object starts its own line; two
    values on one line (``{...}{...}``, ``{...} garbage``) are data after the top-level value."""
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        value, end = DECODER.raw_decode(text, len(text) - len(text.lstrip()))
    except RecursionError:
        raise InputError(str(file), _DEEP, line=1, expected="a JSON list of records",
                         fix="flatten the records") from None
    except ValueError:
        raise InputError(str(file), "top level is not valid JSON", line=1,
                         expected="a JSON list of records, or JSONL (one object per line)",
                         fix="save the records as a list [{...}, ...] or one object per "
                         "line") from None
    rest = text[end:]
    if not rest.strip():
        kind = "a JSON object" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
        raise InputError(str(file), f"top level is {kind}", line=1,
                         expected="a JSON list of records, or JSONL (one object per line)",
                         fix="save the records as a list [{...}, ...] or one object per line")
    gap = len(rest) - len(rest.lstrip())
    if isinstance(value, dict) and "\n" in rest[:gap]:
        log.info("%s holds one object per line: reading it as JSONL", file)
        return
    at = end + gap
    raise InputError(str(file), f"data after the top-level JSON value (at line "
                     f"{_line_of(text, at)}: {rest.lstrip()[:40]!r})", line=_line_of(text, at),
                     expected="one JSON value per file, or one object per line (JSONL)",
                     fix="remove what follows the first value, wrap the records in a list "
                     "[...], or put each object on its own line and name the file .jsonl")


def hub_kwargs(cfg: DataConfig) -> dict[str, Any]:
    """``datasets.load_dataset`` keyword arguments from ``data.hf_split`` / ``revision`` /
    ``config`` (the dataset's configuration name) / ``data_dir``; unset ones are left out."""
    kw: dict[str, Any] = {"split": cfg.hf_split}
    for key, arg in (("config", "name"), ("revision", "revision"), ("data_dir", "data_dir")):
        value = getattr(cfg, key, "")
        if value:
            kw[arg] = value
    return kw


def _iter_hub(name: str, cfg: DataConfig, budget: _Budget) -> Iterator[Raw]:
    try:
        import datasets

        ds = datasets.load_dataset(name, **hub_kwargs(cfg))
    except Exception as e:  # offline, unknown id, bad split: all mean "cannot read it here"
        raise InputError(name, f"not a local file, and loading it as a Hugging Face dataset "
                         f"failed: the hub is unreachable or the id/split is wrong "
                         f"({type(e).__name__}: {str(e)[:200]})", field="data.path",
                         expected=f"a local data file or folder ({READABLE})",
                         fix="download the dataset elsewhere and pass the local file as "
                         "data.path") from e
    row = 0
    try:
        for rec in ds:
            if budget.spent:
                break
            row += 1
            budget.take()
            yield name, row, dict(rec)
    except Exception as e:  # a broken cached shard, a decoding error in a column
        raise InputError(name, f"reading the dataset failed after row {row} "
                         f"({type(e).__name__}: {str(e)[:200]})", line=row + 1,
                         field="data.path", expected="a readable dataset",
                         fix="clear its cache folder and download it again") from e
    if budget.spent:
        budget.over += len(ds) - row
