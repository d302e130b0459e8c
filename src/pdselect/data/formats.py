"""Bytes to text to JSON values, for every file type :mod:`loading` reads.

* which files are data: :func:`file_format` (suffixes compared case-insensitively;
  ``.json .jsonl .csv .tsv`` optionally compressed ``.gz .bz2 .xz``, and ``.parquet``);
* :func:`read_bytes`: the file's bytes, decompressed; any I/O or decompression failure is an
  :class:`InputError` naming the file;
* :func:`to_utf8`: a UTF-8 / UTF-16 / UTF-32 byte-order mark is honoured (UTF-16/32 are
  re-encoded to UTF-8); UTF-16 without a BOM (every other byte NUL) is an error saying how to
  convert it, because guessing the byte order silently is how data gets garbled;
* :data:`DECODER`: ``json`` with numbers that overflow a float (``1e999``, a 5000-digit
  integer) parsed as :class:`HugeNumber` instead of ``inf`` / a ValueError, so a rating of
  ``1e999`` is "out of scale" rather than "missing", and no digit limit aborts a whole list;
* :func:`has_surrogates`: whether a parsed value holds a lone surrogate (``"\\ud800"`` in
  JSON), which no UTF-8 writer (Parquet, rejects.jsonl) accepts. Iterative: any depth.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import zlib
from pathlib import Path
from typing import Any

from ..errors import InputError

FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet"}
COMPRESSED = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
READABLE = ".json .jsonl .csv .tsv (each also .gz/.bz2/.xz) and .parquet"
_MAX_INT_DIGITS = 4000  # below Python's 4300-digit int/str conversion limit


def file_format(path: Path) -> tuple[str, str | None] | None:
    """(format, compression suffix or None), or None when the file is not a data file."""
    suffixes = [s.lower() for s in path.suffixes]
    comp = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSED else None
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and comp):
        return None
    return fmt, comp


def read_bytes(file: Path, comp: str | None) -> bytes:
    try:
        data = file.read_bytes()
    except OSError as e:  # permission denied, a folder named like a file, I/O error, vanished
        raise InputError(str(file), f"cannot read the file ({type(e).__name__}: "
                         f"{e.strerror or e})", field="data.path", expected="a readable file",
                         fix="check the file's permissions and that it is a regular file "
                         "(e.g. chmod +r), or remove it from data.path") from e
    if comp is None:
        return data
    try:
        return COMPRESSED[comp](data)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
        raise InputError(str(file), f"not a valid {comp[1:]} file ({type(e).__name__}: {e})",
                         field="data.path", expected=f"a complete {comp[1:]}-compressed file",
                         fix=f"re-download or re-compress it, or decompress it and point "
                         f"data.path at the result") from e


_BOMS = [(b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
         (b"\xef\xbb\xbf", "utf-8"), (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le")]


def to_utf8(file: Path, data: bytes) -> bytes:
    """The file's text as UTF-8 bytes (BOM removed); UTF-16 without a BOM is an error."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            if enc == "utf-8":
                return data[len(bom):]
            name = enc.upper().replace("-LE", "LE").replace("-BE", "BE")  # iconv's names
            try:
                return data[len(bom):].decode(enc).encode("utf-8")
            except UnicodeError as e:
                raise InputError(str(file), f"starts with a {name} byte-order mark but is not "
                                 f"valid {name} ({e.reason} at byte {getattr(e, 'start', '?')})",
                                 line=1, field="data.path", expected="UTF-8 text",
                                 fix=f"repair or re-export it as UTF-8 (iconv -f {name} -t "
                                 f"UTF-8 '{file}' > out.jsonl shows where it breaks)") from e
    order = _utf16_without_bom(data[:4096])
    if order:
        raise InputError(str(file), f"looks like {order} text without a byte-order mark "
                         "(every other byte is NUL)", line=1, field="data.path",
                         expected="UTF-8 text",
                         fix=f"convert it to UTF-8: iconv -f {order} -t UTF-8 '{file}' > "
                         "out.jsonl (or save it as UTF-8 in your editor)")
    return data


def _utf16_without_bom(head: bytes) -> str | None:
    """'UTF-16LE' / 'UTF-16BE' when NULs sit on one byte parity only (ASCII text as UTF-16)."""
    if len(head) < 4 or b"\x00" not in head:
        return None
    n = len(head) // 2 * 2
    even, odd = head[0:n:2].count(0), head[1:n:2].count(0)
    half = n // 2
    if odd >= 0.3 * half and even <= 0.02 * half:
        return "UTF-16LE"
    if even >= 0.3 * half and odd <= 0.02 * half:
        return "UTF-16BE"
    return None


class HugeNumber(float):
    """A JSON number too large for a float; ``text`` keeps (the start of) its digits."""

    def __new__(cls, text: str) -> "HugeNumber":
        self = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        self.text = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        return self

    def __repr__(self) -> str:
        return self.text


def _parse_float(s: str) -> float:
    x = float(s)
    return x if math.isfinite(x) else HugeNumber(s)  # a finite literal overflowed


def _parse_int(s: str) -> int | float:
    return int(s) if len(s) <= _MAX_INT_DIGITS else HugeNumber(s)


DECODER = json.JSONDecoder(parse_float=_parse_float, parse_int=_parse_int)


def has_surrogates(value: Any) -> bool:
    """True if any string (or key) in ``value`` cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False
