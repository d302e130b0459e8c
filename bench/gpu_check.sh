#!/usr/bin/env bash
# One-GPU check of pdselect, offline, under 8 minutes; writes one JSON file.
#
#   bash bench/gpu_check.sh [--bundle DIR] [OUT_JSON]   # default: $OUT/gpu_check.json, else runs/gpu_check.json
#
# --bundle DIR: an offline bundle (`pdselect bundle`, README "Offline GPU node") is installed
# into a temporary folder by its install.sh (checksums, no network) and put on PYTHONPATH:
# then a Python with a CUDA PyTorch is all the machine needs (the bundle also carries this
# script: bash DIR/run/bench/gpu_check.sh --bundle DIR).
#
# Records: encoder texts/s at batch 256 (fp32 and bf16, forward and whole embed path, padding
# share), proxy training time on bundled USR Topical-Chat (fp32, bf16), 100k-pair scoring
# (pairs from pdselect.data.synthetic; bf16 and fp32), 200 TRL DPO steps of SmolLM2-135M, and
# nvidia-smi peak memory per step (+ torch's own peak). Installs nothing: HF/pip are forced
# offline; a missing package makes that step an error in the JSON, not a download.
# Without a CUDA device it writes {"skipped": "no CUDA device", ...} and exits 0.
# Env: GPU_CHECK_BUDGET_S (default 450: the steps' total time), PY (the python to use).
set -euo pipefail
BUNDLE=""
if [ "${1:-}" = "--bundle" ]; then
  BUNDLE="$(cd "${2:?--bundle needs a folder}" && pwd)"
  shift 2
fi
ARG_JSON="${1:-}"
[ -n "$ARG_JSON" ] && case "$ARG_JSON" in /*) ;; *) ARG_JSON="$PWD/$ARG_JSON" ;; esac
cd "$(dirname "$0")/.."
DEFAULT_OUT=runs/gpu_check.json
[ -n "${OUT:-}" ] && DEFAULT_OUT="$OUT/gpu_check.json"
JSON=${ARG_JSON:-$DEFAULT_OUT}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
mkdir -p "$(dirname "$JSON")"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_NO_INDEX=1 \
       TOKENIZERS_PARALLELISM=true PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

skip() {  # $1: why
  printf '{"skipped": "no CUDA device", "reason": "%s", "host": "%s", "time": "%s"}\n' \
    "$1" "$(hostname)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$JSON"
  echo "gpu_check: skipped ($1); wrote $JSON"
  exit 0
}

if [ "${GPU_CHECK_DEVICE:-cuda}" != cpu ]; then  # GPU_CHECK_DEVICE=cpu: the CPU dry run
  command -v nvidia-smi > /dev/null 2>&1 || skip "nvidia-smi not found"
  nvidia-smi -L > /dev/null 2>&1 || skip "nvidia-smi lists no GPU"
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null \
    || skip "torch.cuda.is_available() is False (or torch is missing for $PY)"
fi
if [ -n "$BUNDLE" ]; then
  LIBS="$(mktemp -d "${TMPDIR:-/tmp}/pdselect-bundle.XXXXXX")"
  PY="$PY" bash "$BUNDLE/install.sh" "$LIBS"
  export PYTHONPATH="$PYTHONPATH:$LIBS"   # after src/: a source checkout's code wins
fi

echo "gpu_check: $( (nvidia-smi -L 2> /dev/null || echo "${GPU_CHECK_DEVICE:-cuda}") | head -1); budget ${BUDGET}s; writing $JSON"
# the driver stops starting steps when the budget is spent; this is the hard stop
timeout --kill-after=10 $((BUDGET + 30)) "$PY" bench/gpu_check.py --out "$JSON" --budget "$BUDGET"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "${JSON%.json}.nvidia-smi.txt" || true
echo "gpu_check: done; $JSON"
