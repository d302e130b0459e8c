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
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

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
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_jsonl(path: str | Path, records) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n")
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


class RunDir:
    """A run folder: stage subfolders, markers and the manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def is_done(self, name: str) -> bool:
        return (self.root / name / MARKER).exists()

    def mark_done(self, name: str, info: dict | None = None) -> None:
        write_json(self.root / name / MARKER, info or {})

    def reset(self, name: str, keep: tuple[str, ...] = ()) -> None:
        """Remove a stage's folder (used when a stage re-runs after an interruption), except
        the sub-folders in ``keep``: resumable work such as finished score shards."""
        folder = self.root / name
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
