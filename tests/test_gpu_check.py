"""bench/gpu_check.sh: valid bash, and a clean skip (exit 0 + a 'skipped' JSON) without CUDA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_script_syntax():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _fake_smi(tmp_path: Path, rc: int) -> dict:
    """PATH with an nvidia-smi that lists a GPU (rc 0) or fails (rc != 0)."""
    b = tmp_path / "bin"
    b.mkdir()
    (b / "nvidia-smi").write_text(f"#!/bin/sh\necho 'GPU 0: Fake (UUID: x)'\nexit {rc}\n")
    (b / "nvidia-smi").chmod(0o755)
    return {**os.environ, "PATH": f"{b}:{os.environ['PATH']}", "GPU_CHECK_BUDGET_S": "1",
            "CUDA_VISIBLE_DEVICES": "", "PY": sys.executable}


@pytest.mark.parametrize("rc, why", [(1, "lists no GPU"), (0, "is_available() is False")])
def test_skips_cleanly_without_cuda(tmp_path, rc, why):
    out = tmp_path / "res" / "gpu.json"
    r = subprocess.run(["bash", str(SCRIPT), str(out)], env=_fake_smi(tmp_path, rc),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["skipped"] == "no CUDA device" and why in got["reason"], got


def test_driver_records_every_step_when_the_budget_is_spent(tmp_path):
    out = tmp_path / "g.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--out", str(out),
                        "--budget", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert set(got["steps"]) == {"env", "encoder", "proxy", "score_100k_bf16",
                                 "score_100k_fp32", "dpo_200", "dpo_budget_curve"}
    assert all("budget spent" in v["skipped"] for v in got["steps"].values())
    assert got["ok"] is False


def test_bundle_is_installed_and_put_on_the_path(tmp_path):
    """--bundle DIR: install.sh runs (checksums, no network) and its folder is on PYTHONPATH
    of the steps. CPU dry run with a budget of 0: no step runs, the install is what is tested;
    a relative OUT_JSON is taken from the caller's folder."""
    from pdselect.bundle import write_bundle, write_wheel

    b = tmp_path / "bundle"
    (b / "wheels").mkdir(parents=True)
    write_wheel(b / "wheels", "bundledpkg", "0.1", {"bundledpkg/__init__.py": b"X = 1\n"})
    write_bundle(b, 10**6, {"python_version": "%d.%d" % sys.version_info[:2]})
    env = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_BUDGET_S": "0",
           "PY": sys.executable, "PIP_NO_INDEX": "1"}
    r = subprocess.run(["bash", str(SCRIPT), "--bundle", str(b), "res/g.json"], env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "install.sh: installed into" in r.stdout
    got = json.loads((tmp_path / "res" / "g.json").read_text())
    assert all("budget spent" in v["skipped"] for v in got["steps"].values())
