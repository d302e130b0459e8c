"""Where the sharded engine reads and writes: local paths, ``file://`` and fsspec object stores.

    where = resolve("s3://bucket/run/score")     # Remote(fs, "bucket/run/score")
    where = resolve("runs/demo/score")           # Path("runs/demo/score"): today's code path
    write_table(where / "pd" / "part-00000.parquet", table)

A location is a ``pathlib.Path`` (plain paths and ``file://`` URIs) or a :class:`Remote` (any
other fsspec protocol, e.g. ``s3://`` with s3fs, ``gs://`` with gcsfs, ``az://`` with adlfs,
``memory://`` built in). Both support ``/`` and ``.name``, so the engine builds part paths the
same way for either, and local paths never touch fsspec: their behaviour and bytes are those of
the engine before object stores were supported.

Why resume stays safe on an object store. The engine's resume rule is "a part file exists iff it
is complete". Locally that is a temporary file renamed into place (``atomic_path``). Object
stores have no atomic rename (a "rename" is copy + delete), but an object becomes visible only
when its upload completes: a single PUT (or a multipart upload, visible only once completed) is
all or nothing. So a remote part is serialised to bytes in memory (one shard of numbers: a few
MB per 100k rows) and written with one ``pipe``: a killed upload leaves no object, never a
partial one, and there are no temporary files to clear on resume.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StageError
from ..run.artifacts import atomic_path, json_text, write_json as _write_json_local


@dataclass(frozen=True)
class Remote:
    """A path on a non-local fsspec filesystem (``path`` without the protocol, as fs wants)."""

    fs: Any
    path: str

    def __truediv__(self, name: str) -> "Remote":
        return Remote(self.fs, f"{self.path.rstrip('/')}/{name}")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:  # the URI: messages and _plan.json (a resume must match it)
        return self.fs.unstrip_protocol(self.path)


Where = Path | Remote


def resolve(path: str | Path | Remote) -> Where:
    """A Path for plain paths and ``file://`` URIs, a :class:`Remote` for other protocols."""
    if isinstance(path, Remote):
        return path
    if isinstance(path, PurePath) or "://" not in str(path):
        return Path(path)
    import fsspec.core  # here, not at the top: local paths never import or touch fsspec
    from fsspec.implementations.local import LocalFileSystem

    uri = str(path)
    protocol = uri.split("://", 1)[0]
    try:
        fs, inner = fsspec.core.url_to_fs(uri)
    except ImportError as e:  # a known protocol whose implementation is not installed
        pkg = _package_of(protocol)
        raise StageError(f"{uri}: the {protocol}:// filesystem needs the package {pkg}, "
                         f"which is not installed ({e}). Fix: pip install {pkg} (on every "
                         "machine that runs the stage), or give a local path.") from e
    except ValueError as e:  # fsspec: "Protocol not known"
        raise StageError(f"{uri}: {protocol}:// is not a filesystem fsspec knows ({e}). Fix: "
                         "give a local path, a file:// URI, or an fsspec URI (s3://, gs://, "
                         "az://, ...) with its package installed.") from e
    if isinstance(fs, LocalFileSystem):
        return Path(inner)
    return Remote(fs, inner)


def _package_of(protocol: str) -> str:
    """The module fsspec's registry names for ``protocol`` (s3 -> s3fs, gs -> gcsfs, az and
    abfs -> adlfs): its top-level package is what to pip install."""
    from fsspec.registry import known_implementations

    cls = known_implementations.get(protocol.split("::")[-1], {}).get("class", "")
    return cls.split(".")[0] if cls else f"the fsspec implementation of {protocol}://"


def uri(where: Where) -> str:
    """The stable name pinned in ``_plan.json``: an absolute local path, or the URI."""
    return str(where.resolve()) if isinstance(where, Path) else str(where)


# ----------------------------------------------------------------------------- listing
def kind(where: Where) -> str | None:
    """``"file"``, ``"directory"`` or None (missing)."""
    if isinstance(where, Path):
        return "file" if where.is_file() else "directory" if where.is_dir() else None
    try:
        return where.fs.info(where.path).get("type")
    except FileNotFoundError:
        return None


def parquet_files(folder: Where) -> list[Where]:
    """``folder``'s ``*.parquet`` files in name order, skipping hidden (``.``) and private
    (``_``) names such as temp files and ``_plan.json``-style side files."""
    if isinstance(folder, Path):
        return sorted(f for f in folder.glob("*.parquet") if not f.name.startswith((".", "_")))
    names = [e["name"].rstrip("/").rsplit("/", 1)[-1]
             for e in folder.fs.ls(folder.path, detail=True) if e.get("type") == "file"]
    return [folder / n for n in sorted(names)
            if n.endswith(".parquet") and not n.startswith((".", "_"))]


def glob(folder: Where, pattern: str) -> list[Where]:
    """Files of ``folder`` matching ``pattern`` in name order ([] if the folder is missing)."""
    if isinstance(folder, Path):
        return sorted(folder.glob(pattern))
    return [Remote(folder.fs, p) for p in sorted(folder.fs.glob(f"{folder.path}/{pattern}"))]


def exists(where: Where) -> bool:  # a part exists iff it is complete (module docstring)
    return where.exists() if isinstance(where, Path) else bool(where.fs.exists(where.path))


def makedirs(folder: Where) -> None:
    """Create a local ``folder``. Object stores have no folders (a key prefix exists once an
    object is under it), and s3fs/gcsfs ``makedirs`` may try to create the bucket: no-op."""
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)


def clear_tmp(folder: Where) -> None:
    """Delete the temp files a SIGKILL between write and rename leaves; remote writes are one
    put each and leave none."""
    if isinstance(folder, Path):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- JSON
def read_json(where: Where) -> Any:
    if isinstance(where, Path):
        return json.loads(where.read_text())
    return json.loads(where.fs.cat_file(where.path))


def write_json(where: Where, obj: Any) -> None:
    """Atomic JSON write. Remote: the bytes ``run.artifacts.write_json`` writes locally (same
    serialiser, so a manifest reads the same wherever it lives), sent in one put."""
    if isinstance(where, Path):
        _write_json_local(where, obj)
        return
    where.fs.pipe_file(where.path, json_text(obj).encode())


# ----------------------------------------------------------------------------- Parquet
@contextlib.contextmanager
def open_parquet(where: Where) -> Iterator[pq.ParquetFile]:
    """A ParquetFile (footer read, row groups on demand); the remote file stays open inside."""
    if isinstance(where, Path):
        yield pq.ParquetFile(where)
        return
    with where.fs.open(where.path, "rb") as fh:
        yield pq.ParquetFile(fh)


def num_rows(where: Where) -> int:
    with open_parquet(where) as pf:
        return pf.metadata.num_rows


def size(where: Where) -> int:
    return where.stat().st_size if isinstance(where, Path) else int(where.fs.size(where.path))


def read_table(where: Where, columns: Sequence[str] | None = None, **kw) -> pa.Table:
    if isinstance(where, Path):
        return pq.read_table(where, columns=columns, **kw)
    with where.fs.open(where.path, "rb") as fh:
        return pq.read_table(fh, columns=columns, **kw)


def write_table(where: Where, table: pa.Table) -> None:
    """Write a part so that it is complete or absent: local temp file + rename; remote one put
    of the whole serialised file (see the module docstring)."""
    if isinstance(where, Path):
        with atomic_path(where) as tmp:
            pq.write_table(table, tmp)
        return
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    where.fs.pipe_file(where.path, buf.getvalue().to_pybytes())
