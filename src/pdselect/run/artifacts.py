"""Run directory: one folder per stage, atomic writes, completion markers, manifest.

    runs/demo/
      config.yaml            resolved config
      manifest.json          versions, seed, git sha, wall time per stage
      ingest/  rated.parquet rejects.jsonl meta.json _SUCCESS
      aggregate/ ...  proxy/ ...  score/ ...  select/ ...
      report.md report.json

A stage is finished iff its ``_SUCCESS`` marker exists; the marker is written last, after every
artifact was renamed into place, so a killed stage is never read as complete. Every file is
written to a temporary name in the same folder and renamed (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..errors import PDSelectError
from .safety import (RunDirError, RunDirLinkError, links_under, low_on_space,  # noqa: F401
                     refuse_links, refuse_links_in_run, remove_tree, storage_error)

MARKER = "_SUCCESS"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as e:  # disk full / read-only: say which file and why
        better = storage_error(e, path) if not isinstance(e, PDSelectError) else None
        if better is None:
            raise
        raise better from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class ParquetAppender:
    """One Parquet file written batch by batch to ``tmp``: the first batch (a DataFrame or an
    Arrow table) fixes the schema, so a later batch cannot drift (e.g. an all-null column);
    :meth:`commit` renames the file onto its final name. Use :func:`parquet_appender` when one
    block writes the whole file."""

    def __init__(self, tmp: str | Path):
        self.tmp, self.writer = Path(tmp), None

    def append(self, batch, row_group_size: int | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(
            batch, preserve_index=False, schema=None if self.writer is None else self.writer.schema)
        if self.writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table, row_group_size=row_group_size)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self, path: str | Path) -> Path:
        """Close and rename onto ``path`` (nothing is written when nothing was appended)."""
        written = self.writer is not None
        self.close()
        if written:
            os.replace(self.tmp, path)
        return Path(path)


@contextlib.contextmanager
def parquet_appender(path: str | Path) -> Iterator[ParquetAppender]:
    """A :class:`ParquetAppender` on a temporary name next to ``path``, renamed onto ``path``
    when the block succeeds (``atomic_path``); removed when it fails. A block that appended
    nothing is an error: an empty file under ``path`` would not be Parquet."""
    with atomic_path(path) as tmp:
        appender = ParquetAppender(tmp)
        try:
            yield appender
            if appender.writer is None:
                raise PDSelectError(f"{path}: no rows were written (internal: an empty batch "
                                    "stream)")
        finally:
            appender.close()


def json_text(obj: Any) -> str:
    """The text ``write_json`` writes (indented, numpy scalars as numbers, newline-terminated)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def json_line(record: dict) -> str:
    """One JSON Lines record (numpy scalars and arrays as JSON numbers and lists)."""
    return json.dumps(record, ensure_ascii=False, default=_json_default) + "\n"


def write_jsonl(path: str | Path, records) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json_line(r))
            n += 1
    return n


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


SENTINEL = ".pdselect-run"  # marks a folder pdselect created: the only kind it deletes in
LOCK = ".pdselect-lock"  # held (flock) by the one process writing the run


def _looks_like_legacy_run(root: Path) -> bool:
    """A run made before the sentinel existed: config.yaml + a pdselect manifest."""
    try:
        m = read_json(root / "manifest.json")
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "stages" in m and "environment" in m and \
        (root / "config.yaml").is_file()


def check_run_dir(root: str | Path) -> str | None:
    """Why pdselect must not write into ``root``, or None when it may (nothing is created).

    Allowed: a new folder, an empty folder, or a folder pdselect marked as a run."""
    if not str(root).strip():
        return ("run_dir is empty. Fix: set run_dir to a new or empty folder, e.g. "
                "run_dir=runs/my_run.")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(root)):
        return (f"run_dir {str(root)!r} is a URI; the run directory must be a local (or "
                "mounted) folder: pdselect locks it and renames files in it atomically, which "
                "object stores and in-memory file systems cannot do (it would create a folder "
                f"literally named {str(root).split('/', 1)[0]!r}). Fix: give a local folder, "
                "e.g. run_dir=runs/my_run, and copy the finished run to remote storage "
                "afterwards (e.g. `aws s3 sync runs/my_run s3://...`).")
    p = Path(root).expanduser()
    if p.exists() and not p.is_dir():
        return (f"run_dir {str(root)!r} is an existing file, not a folder. Fix: choose a new "
                "or empty folder, e.g. run_dir=runs/my_run.")
    blocker = next((a for a in p.absolute().parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        return (f"run_dir {str(root)!r} cannot be created: {blocker} is a file, not a folder. "
                "Fix: choose a run_dir whose parent folders are folders, e.g. "
                "run_dir=runs/my_run.")
    resolved = p.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == home:
        what = "the working directory" if resolved == cwd else \
            "your home folder" if resolved == home else "a parent of the working directory"
        return (f"run_dir {str(root)!r} is {what}; pdselect writes and deletes stage folders "
                "in its run directory. Fix: choose an empty or new folder, e.g. "
                "run_dir=runs/my_run.")
    if not p.exists() or (p / SENTINEL).is_file() or _looks_like_legacy_run(p):
        return None
    others = sorted(c.name for c in p.iterdir() if c.name != LOCK)  # LOCK: a run starting
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        return (f"run_dir {str(root)!r} is a non-empty folder that pdselect did not create "
                f"(no {SENTINEL} marker; it holds {shown}). pdselect refuses to write there so "
                "that none of your files is overwritten or deleted. Fix: choose an empty or new "
                "folder.")
    return None


class RunDir:
    """A run folder: stage subfolders, markers and the manifest.

    ``RunDir(root)`` opens an existing run for reading (and creates nothing that deletes).
    ``RunDir.claim(root)`` is how a run starts writing: it refuses folders that are not ours
    (:func:`check_run_dir`), marks the folder with :data:`SENTINEL` and takes an exclusive
    lock, released by :meth:`release` (or when the process exits)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None

    @classmethod
    def claim(cls, root: str | Path) -> "RunDir":
        problem = check_run_dir(root)
        if problem:
            raise RunDirError(problem)
        root = Path(root).expanduser()
        if root.is_dir():  # the root itself may be a link (a run on another disk); not inside
            refuse_links_in_run(root)
        try:
            run = cls(root)
            run._lock()
            sentinel = run.root / SENTINEL
            if not sentinel.is_file():
                write_text(sentinel, "This folder is a pdselect run directory; pdselect only "
                                     "deletes inside folders carrying this file.\n")
        except OSError as e:
            raise storage_error(e, root, creating=True) from None
        return run

    def _lock(self) -> None:
        import fcntl

        # O_NOFOLLOW: a link named like the lock must not get its target truncated
        try:
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot open the lock file {self.root / LOCK} ({e.strerror}). "
                              "Fix: remove it if it is a link, or choose another run_dir.") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunDirError(
                f"run_dir {str(self.root)!r} is in use by another pdselect process (it holds "
                f"{self.root / LOCK}). Fix: wait for that run to finish, or choose another "
                "run_dir.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        """Drop the lock taken by :meth:`claim` (idempotent)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @property
    def owned(self) -> bool:
        return (self.root / SENTINEL).is_file()

    def stage(self, name: str) -> Path:
        p = self.root / name
        if p.is_symlink():
            refuse_links(p, "writes and deletes the files of its stage folders")
        p.mkdir(parents=True, exist_ok=True)
        return p

    def is_done(self, name: str) -> bool:
        return (self.root / name / MARKER).exists()

    def mark_done(self, name: str, info: dict | None = None) -> None:
        """Write the stage's marker LAST, with the sha256 of every file the stage wrote, so a
        later run can tell an intact artifact from a truncated or overwritten one."""
        write_json(self.root / name / MARKER,
                   {**(info or {}), "_files": stage_checksums(self.root, name)})

    def corrupt_files(self, name: str) -> list[str]:
        """Files of a finished stage that are missing or no longer match their checksum
        (empty for markers of older versions, which recorded none)."""
        recorded = read_json(self.root / name / MARKER).get("_files") or {}
        bad = []
        for rel, digest in recorded.items():
            f = self.root / rel
            if not f.is_file() or file_sha256(f) != digest:
                bad.append(rel)
        return bad

    def reset(self, name: str, keep: tuple[str, ...] = ()) -> None:
        """Remove a stage's folder (used when a stage re-runs after an interruption), except
        the sub-folders in ``keep``: resumable work such as finished score shards."""
        if not self.owned:
            raise RunDirError(f"refusing to delete {self.root / name}: {self.root} has no "
                              f"{SENTINEL} marker, so pdselect did not create it. Fix: run in "
                              "an empty or new folder.")
        folder = self.root / name
        # a link anywhere in the folder: rmtree(ignore_errors) skipped a linked folder silently
        # and the glob below followed it, deleting the target's files (issue 17)
        refuse_links(folder, f"deletes the stage folder {folder} before the stage re-runs")
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
            return
        for child in folder.glob("*") if folder.exists() else []:
            if child.name in keep:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict:
        if self.manifest_path.exists():
            return read_json(self.manifest_path)
        return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stages": {},
                "environment": environment_info()}

    def record_stage(self, name: str, seconds: float, summary: dict, seed: int) -> None:
        m = self.manifest()
        m["stages"][name] = {"wall_seconds": round(seconds, 3), "seed": seed,
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary}
        m["environment"] = environment_info()
        write_json(self.manifest_path, m)


#: files a stage writes into the run ROOT rather than its own folder
ROOT_FILES = {"report": ("report.md", "report.json", "report.html")}


#: files a stage writes that a LATER stage amends (the report adds its verdict to the dataset
#: card): not checksummed, or every re-run would find them "corrupt" and redo the stage
AMENDED_LATER = {"select/dpo/README.md"}


def stage_checksums(root: Path, name: str) -> dict[str, str]:
    """{path relative to the run dir: sha256} of a stage's files (its folder, minus the marker
    and temp files, plus its files in the run root)."""
    root = Path(root)
    files = [f for f in sorted((root / name).rglob("*")) if f.is_file() and f.name != MARKER
             and not f.name.startswith(".")] if (root / name).is_dir() else []
    files += [root / f for f in ROOT_FILES.get(name, ()) if (root / f).is_file()]
    return {str(f.relative_to(root)): file_sha256(f) for f in files
            if str(f.relative_to(root)) not in AMENDED_LATER}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict:
    from importlib import metadata

    versions = {}
    for pkg in ("pdselect", "torch", "transformers", "trl", "datasets", "peft", "numpy",
                "pandas", "pyarrow", "ray"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "git_sha": git_sha(), "versions": versions}
