"""Offline bundle: splitting, checksums, reassembly, a corrupt part caught, and install.sh
installing a tiny wheel with no network (the download step is mocked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pdselect.bundle import make_bundle, parse_size, write_bundle, write_wheel
from pdselect.bundle.wheels import needed_packages, parse_have
from pdselect.errors import StageError

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _tiny_wheel(folder: Path, name: str = "tinypkg", payload: bytes = b"") -> Path:
    return write_wheel(folder, name, "0.1", {f"{name}/__init__.py": b"VALUE = 42\n",
                                             f"{name}/blob.bin": payload})


def _install(bundle: Path, target: Path, **env):
    return subprocess.run(["bash", str(bundle / "install.sh"), str(target)], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PY": sys.executable, "PIP_NO_INDEX": "1", **env})


def _fake_bundle(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    (b / "wheels").mkdir(parents=True)
    _tiny_wheel(b / "wheels", payload=os.urandom(5000))      # incompressible: > part size
    _tiny_wheel(b / "wheels", "smallpkg")
    (b / "models").mkdir()
    (b / "models" / "weights.bin").write_bytes(os.urandom(2500))
    write_bundle(b, part_size=1000, info={"python_version": PY})
    return b


def test_parse_size_and_have(tmp_path):
    assert parse_size("45MB") == 45_000_000 and parse_size("1MiB") == 2**20
    assert parse_size(" 2 GB ") == 2 * 10**9 and parse_size(1000) == 1000
    for bad in ("45 parsecs", "-1MB", "0"):
        with pytest.raises(StageError, match="--part-size"):
            parse_size(bad)
    f = tmp_path / "freeze.txt"
    f.write_text("# pip freeze\nNumPy==2.4.0\ntyping_extensions==4.1\n-e git+x#egg=y\n")
    assert parse_have(str(f)) == {"numpy", "typing-extensions"}
    assert parse_have(["trl,peft", "Accelerate"]) == {"trl", "peft", "accelerate"}


def test_split_checksums_reassembly_and_install(tmp_path):
    b = _fake_bundle(tmp_path)
    parts = sorted((b / "wheels").glob("tinypkg-*.whl.part-*"))
    assert len(parts) >= 5 and all(p.stat().st_size <= 1000 for p in parts)
    assert not list((b / "wheels").glob("tinypkg-*.whl"))            # only its parts ship
    assert len(list((b / "models").glob("weights.bin.part-*"))) == 3
    sums = (b / "SHA256SUMS").read_text()
    assert "wheels/tinypkg-0.1-py3-none-any.whl.part-000" in sums and "smallpkg" in sums
    assert "weights.bin" in (b / "SHA256SUMS.whole").read_text()
    target = tmp_path / "target"
    r = _install(b, target)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "files verified, 3 reassembled" in r.stdout      # tinypkg, smallpkg, weights
    out = subprocess.run([sys.executable, "-c", "import tinypkg, smallpkg; print(tinypkg.VALUE)"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(target)})
    assert out.stdout.strip() == "42", out.stderr
    assert (b / "models" / "weights.bin").stat().st_size == 2500      # reassembled too


def test_corrupt_or_missing_part_is_refused(tmp_path):
    b = _fake_bundle(tmp_path)
    part = sorted((b / "wheels").glob("tinypkg-*.part-*"))[1]
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    r = _install(b, tmp_path / "t1")
    assert r.returncode != 0 and "corrupt" in r.stderr and part.name in r.stderr
    assert not (tmp_path / "t1").exists()
    part.unlink()
    r = _install(b, tmp_path / "t2")
    assert r.returncode != 0 and "missing or corrupt" in r.stderr


def test_wrong_python_is_refused(tmp_path):
    b = tmp_path / "b"
    (b / "wheels").mkdir(parents=True)
    _tiny_wheel(b / "wheels")
    write_bundle(b, 10**6, {"python_version": "3.99"})
    r = _install(b, tmp_path / "t")
    assert r.returncode != 0 and "Python 3.99" in r.stderr
    assert _install(b, tmp_path / "t", ALLOW_OTHER_PYTHON="1").returncode == 0


def test_make_bundle_with_mocked_download(tmp_path):
    """The whole command from this installation: pdselect's own wheel (from the source tree),
    no model, the download mocked: pins are the compiled packages the target lacks."""
    asked = []

    def fake_download(pins, dest):
        asked.extend(pins)
        return [_tiny_wheel(dest, "fakedep")]

    have = ["numpy", "pandas", "pyarrow", "scipy", "transformers", "tokenizers", "safetensors",
            "datasets", "pyyaml", "tqdm", "fsspec", "huggingface-hub"]
    info = make_bundle(tmp_path / "b", PY, have=have, part_size="200KB", models=[], extras=[],
                       downloader=fake_download)
    names = {p.split("-")[0] for p in info["files"] if p.startswith("wheels/")}
    assert "wheels/pdselect" in "".join(info["files"]) and "wheels/fakedep" in "".join(info["files"])
    assert not any(p.startswith(("numpy", "torch")) for p in asked), asked
    assert all("==" in p for p in asked) and names
    assert (tmp_path / "b" / "run" / "bench" / "gpu_check.sh").exists()
    whl = next((tmp_path / "b" / "wheels").glob("pdselect-*.whl"), None)
    if whl is None:  # split: reassemble through install.sh instead of reading it here
        assert any("pdselect" in s for s in info["split"])
    else:
        names = zipfile.ZipFile(whl).namelist()
        assert "pdselect/cli.py" in names and "pdselect/bundled/README.md" in names
        assert not any("__pycache__" in n for n in names)
    with pytest.raises(StageError, match="not empty"):
        make_bundle(tmp_path / "b", PY, models=[], downloader=fake_download)

    def offline_fails(pins, dest):
        raise StageError(f"no Python {PY} wheel for {pins}")

    with pytest.raises(StageError, match="no Python"):
        make_bundle(tmp_path / "c", PY, have=have, models=[], extras=[], downloader=offline_fails)
    assert not (tmp_path / "c").exists()                   # nothing half-written is left


def test_torch_is_never_bundled():
    names = needed_packages(["train"], [], set(), PY)
    assert "pdselect" in names and "torch" not in names
    assert not any(n.startswith("nvidia") or n == "triton" for n in names)
