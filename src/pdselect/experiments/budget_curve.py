"""The DPO-level budget curve (issue 19, item 4): where, if anywhere, does filtering by PD beat
training on everything?

    plan = plan_runs(CurveConfig())                     # every run, most informative first
    cell = prepare_cell(cfg, rated, 0.3, 0, folder)     # aggregate + proxies + scores, ONCE
    job = make_job(run, cell, cfg.align, folder)        # writes the run's training pairs
    row = train_and_eval(job)                           # (in a worker process) DPO + eval

For each (conflict level, seed) ONE cell is built with the experiment grid's own functions
(``grid.make_cell``: aggregate, proxy models, scores) and every method trains from the same
start on its pairs of that cell's pool:

    ALL@100%, PD at each budget, the threshold rule PD <= 0 (its size recorded), RAND and RAF
    (unified-model margin) at PD's budgets and, optionally, at the threshold rule's size.

Each policy is evaluated on EVERY held-out pair with an overall label (or a seeded sample of
``eval_pairs``): DPO implicit-reward accuracy oriented by the overall preference, and the
length-controlled numbers (accuracy within the pairs whose overall-preferred response is the
longer / the shorter one, in characters, and the mean of the two). The rule "the longer
response wins" is a baseline row of every cell (no training).

Runs are ordered so that a grid cut short has already answered the question: conflict levels
in the configured order, then tiers (1: ALL, PD at the two smallest budgets, RAND and RAF at the
smallest; 2: the rest of PD, PD <= 0, RAND and RAF at the second budget; 3: the rest), then
seeds. The driver is bench/dpo_budget_curve.py (processes, time limit, JSON lines, summary).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import AlignConfig, RunConfig
from ..report.evaluate import conflict_rate

log = logging.getLogger(__name__)

THRESHOLD = "PD<=0"
LENGTH_RULE = "LONGER"
METHODS = ("ALL", "PD", THRESHOLD, "RAND", "RAF")
MATCHED = "=PD<=0"  # budget label of RAND/RAF matched to the threshold rule's size


@dataclasses.dataclass
class CurveConfig:
    """What the curve runs. From a pdselect config (``from_config``): experiment.dpo_conflict_
    levels, dpo_seeds, budgets, dpo_methods (ALL, PD, RAND, RAF; PD brings the rule PD <= 0),
    dpo_eval_pairs; the rest are the driver's options."""

    conflicts: list = dataclasses.field(default_factory=lambda: [0.3, None])
    seeds: list = dataclasses.field(default_factory=lambda: [0, 1, 2])
    budgets: list = dataclasses.field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9])
    methods: list = dataclasses.field(default_factory=lambda: list(METHODS))
    threshold_matched: bool = True   # RAND and RAF also at the PD <= 0 rule's size (tier 3)
    eval_pairs: int = 0              # 0: every held-out pair with an overall label
    workers: int = 4                 # DPO runs in parallel processes (0: in this process)
    time_limit_s: float = 0.0        # no new run starts after this many seconds (0: none)
    keep_models: bool = False        # keep each trained policy (540 MB each for SmolLM2)
    eval_batch_size: int = 8

    @classmethod
    def from_config(cls, cfg: RunConfig, **options) -> "CurveConfig":
        ex = cfg.experiment
        unknown = [m for m in ex.dpo_methods if m not in METHODS or m == THRESHOLD]
        if unknown or "ALL" not in ex.dpo_methods:
            raise ValueError(f"experiment.dpo_methods={ex.dpo_methods}: the budget curve "
                             "needs ALL and runs only ALL, PD (with the rule PD<=0), RAND, RAF; "
                             f"not {unknown}")
        if any(not 0 < b < 1 for b in ex.budgets):
            raise ValueError(f"experiment.budgets={ex.budgets}: fractions in (0, 1)")
        methods = [m for m in METHODS if m in ex.dpo_methods or (m == THRESHOLD and
                                                                 "PD" in ex.dpo_methods)]
        return cls(conflicts=list(ex.dpo_conflict_levels), seeds=list(ex.dpo_seeds),
                   budgets=sorted(ex.budgets), methods=methods,
                   eval_pairs=ex.dpo_eval_pairs, **options)


def conflict_name(level) -> str:
    return "natural" if level is None else f"{float(level):g}"


def budget_label(budget: float | None) -> str:
    return f"{round(100 * budget)}%"


def run_id(r: dict) -> str:
    lab = r["budget_label"].replace("%", "").replace("=PD<=0", "thr").replace("PD<=0", "rule")
    meth = r["method"].replace("<=0", "le0")
    return f"c{r['conflict']}_s{r['seed']}_{meth}_{lab}"


def _tier(method: str, label: str, budgets: list[float]) -> tuple[int, int]:
    """(tier, rank within the tier): 1 answers 'PD vs ALL' first, 3 completes the curve."""
    b = sorted(budgets)
    small2 = {budget_label(x) for x in b[:2]}
    if method == "ALL":
        return 1, 0
    if method == "PD":
        return (1 if label in small2 else 2), 1
    if method == THRESHOLD:
        return 2, 0
    rank = 2 if method == "RAND" else 3
    if label == budget_label(b[0]):
        return 1, rank
    if len(b) > 1 and label == budget_label(b[1]):
        return 2, rank
    return 3, rank


def plan_runs(curve: CurveConfig) -> list[dict]:
    """Every DPO run of the curve, in the order they should start."""
    runs = []
    for ci, level in enumerate(curve.conflicts):
        for si, seed in enumerate(curve.seeds):
            for m in curve.methods:
                labels = {"ALL": ["100%"], THRESHOLD: [THRESHOLD]}.get(
                    m, [budget_label(b) for b in curve.budgets])
                if m in ("RAND", "RAF") and curve.threshold_matched and THRESHOLD in curve.methods:
                    labels = labels + [MATCHED]
                for lab in labels:
                    tier, rank = _tier(m, lab, curve.budgets)
                    r = {"conflict": conflict_name(level), "level": level, "seed": seed,
                         "method": m, "budget_label": lab, "tier": tier}
                    r["run_id"] = run_id(r)
                    r["_key"] = (ci, tier, si, rank, lab)
                    runs.append(r)
    runs.sort(key=lambda r: r["_key"])
    return [{k: v for k, v in r.items() if k != "_key"} for r in runs]


# ----------------------------------------------------------------------------- cells
def eval_frame(test: pd.DataFrame, n_max: int, seed: int) -> pd.DataFrame:
    """Held-out pairs with an overall label, oriented by it: chosen = the overall winner."""
    t = test[test["h_agrees_overall"].notna()]
    if 0 < n_max < len(t):
        t = t.sample(n=n_max, random_state=seed).sort_index()
    flip = t["h_agrees_overall"].to_numpy(np.float64) == 0
    c, r = t["chosen"].to_numpy(), t["rejected"].to_numpy()
    win, lose = np.where(flip, r, c), np.where(flip, c, r)
    return pd.DataFrame({"pair_id": t["pair_id"].astype(str).to_numpy(),
                         "prompt": t["input"].to_numpy(), "chosen": win, "rejected": lose,
                         "len_chosen": [len(x) for x in win],
                         "len_rejected": [len(x) for x in lose]})


def length_metrics(correct: np.ndarray, len_pref: np.ndarray, len_other: np.ndarray) -> dict:
    """Accuracy overall and within the strata 'the overall-preferred response is the longer /
    the shorter one' (equal lengths: in neither), the mean of the two (``acc_lc``) and the
    logistic length-adjusted accuracy at equal lengths (stats.length_controlled)."""
    from ..stats import length_controlled

    diff = np.asarray(len_pref, dtype=np.float64) - np.asarray(len_other, dtype=np.float64)
    m = length_controlled(correct, diff)
    return {"eval_n": m["n"], "acc": m["acc"], "acc_longer": m["acc_longer"],
            "n_longer": m["n_longer"], "acc_shorter": m["acc_shorter"],
            "n_shorter": m["n_shorter"], "acc_lc": m["balanced"],
            "n_equal_len": m["n"] - m["n_longer"] - m["n_shorter"],
            "acc_len_adjusted": m["adjusted"], "len_slope": m["slope"]}


@dataclasses.dataclass
class PreparedCell:
    """One (conflict level, seed): the grid's Cell, its held-out frame on disk, its facts."""

    cell: object          # experiments.methods.Cell
    eval_path: Path
    info: dict


def prepare_cell(cfg: RunConfig, rated, level, seed: int, folder: Path,
                 eval_pairs: int = 0) -> PreparedCell:
    """Aggregate, proxies and scores ONCE (grid.make_cell), the held-out frame, the length
    rule's baseline row."""
    from .grid import make_cell

    t0 = time.perf_counter()
    cell = make_cell(cfg, rated, level, seed)
    ev = eval_frame(cell.test, eval_pairs, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    eval_path = folder / "eval_pairs.parquet"
    ev.to_parquet(eval_path, index=False)
    agrees = cell.train["h_agrees_overall"].to_numpy(np.float64)
    val = [v for v in cell.table.attrs.get("proxy_val_acc", {}).values() if v is not None]
    info = {"conflict": conflict_name(level), "seed": seed, "pool": len(cell.train),
            "pool_conflict_rate": conflict_rate(agrees), "eval_n": len(ev),
            "pd_le0_share": float((cell.table["pd"].to_numpy() <= 0).mean()),
            "proxy_val_acc": float(np.mean(val)) if val else float("nan"),
            "cell_s": round(time.perf_counter() - t0, 2)}
    return PreparedCell(cell, eval_path, info)


def length_rule_row(pc: PreparedCell) -> dict:
    """The baseline 'the longer response wins' on the cell's held-out pairs (ties: half)."""
    ev = pd.read_parquet(pc.eval_path)
    lp, lo = ev["len_chosen"].to_numpy(), ev["len_rejected"].to_numpy()
    correct = np.where(lp > lo, 1.0, np.where(lp < lo, 0.0, 0.5))
    r = {"kind": "baseline", "status": "ok", "method": LENGTH_RULE, "budget_label": "-",
         "n_train": 0, **pc.info, **length_metrics(correct, lp, lo)}
    r["run_id"] = f"c{r['conflict']}_s{r['seed']}_{LENGTH_RULE}"
    return r


def run_pairs(run: dict, pc: PreparedCell) -> pd.DataFrame:
    """The training pairs of one run, from the cell's pool (the grid's method_pairs)."""
    from ..select.selectors import make_selector
    from .methods import method_pairs

    cell, lab = pc.cell, run["budget_label"]
    if run["method"] == "ALL":
        return method_pairs("ALL", 1.0, cell)[0]
    if run["method"] == THRESHOLD:
        return cell.train[cell.table["pd"].to_numpy() <= 0]
    if lab == MATCHED:
        k = int((cell.table["pd"].to_numpy() <= 0).sum())
        name = {"RAND": "random", "RAF": "margin"}[run["method"]]
        mask = make_selector(name, budget_count=max(k, 1),
                             random_state=cell.seed).fit(cell.table).get_support()
        return cell.train[mask]
    return method_pairs(run["method"], float(lab.rstrip("%")) / 100, cell)[0]


def make_job(run: dict, pc: PreparedCell, acfg: AlignConfig, out: Path, *,
             device: str, keep_model: bool = False, eval_batch_size: int = 8) -> dict:
    """Write the run's training pairs; return the picklable job a worker runs."""
    sub = run_pairs(run, pc)
    run_dir = Path(out) / "runs" / run["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"prompt": sub["input"].to_numpy(), "chosen": sub["chosen"].to_numpy(),
                  "rejected": sub["rejected"].to_numpy()}).to_parquet(
        run_dir / "train.parquet", index=False)
    meta = {**{k: v for k, v in run.items() if k != "level"}, "kind": "run",
            "n_train": len(sub), "train_share": len(sub) / max(pc.info["pool"], 1),
            "train_conflict_rate": conflict_rate(sub["h_agrees_overall"].to_numpy(np.float64)),
            **{k: v for k, v in pc.info.items() if k not in ("conflict", "seed", "eval_n")}}
    return {"meta": meta, "align": dataclasses.asdict(acfg), "train": str(run_dir /
            "train.parquet"), "eval": str(pc.eval_path), "run_dir": str(run_dir),
            "seed": int(run["seed"]), "device": device, "keep_model": keep_model,
            "eval_batch_size": eval_batch_size}


# ----------------------------------------------------------------------------- worker
def _load_policy(model_dir: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    if (Path(model_dir) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)


def _evaluate(job: dict, acfg: AlignConfig, model_dir: str) -> dict:
    """Per-pair implicit rewards of the trained policy (reference: the start; LoRA: the base
    with adapters off), saved to eval.parquet; the accuracy and length-controlled numbers."""
    from transformers import AutoTokenizer

    from ..align.implicit_reward import pair_rewards

    ev = pd.read_parquet(job["eval"])
    tok = AutoTokenizer.from_pretrained(acfg.policy)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    policy = _load_policy(model_dir, job["device"])
    rw = pair_rewards(policy, None if acfg.lora else acfg.policy,
                      ev[["prompt", "chosen", "rejected"]], acfg.beta, acfg.max_length,
                      tokenizer=tok, batch_size=job["eval_batch_size"])
    correct = (rw["gap"].to_numpy() > 0).astype(np.float64)   # ties count as wrong
    pd.DataFrame({"pair_id": ev["pair_id"], "gap": rw["gap"].to_numpy(),
                  "len_chosen": ev["len_chosen"], "len_rejected": ev["len_rejected"]}).to_parquet(
        Path(job["run_dir"]) / "eval.parquet", index=False)
    del policy
    return {**length_metrics(correct, ev["len_chosen"].to_numpy(),
                             ev["len_rejected"].to_numpy()),
            "mean_margin": float(rw["gap"].mean())}


def warm_worker() -> None:
    """Import what a run needs (torch, transformers, TRL): sent to each worker at start, so
    the imports overlap the first cell's proxy training in the driver."""
    from ..align import dpo, implicit_reward  # noqa: F401
    import trl  # noqa: F401


def train_and_eval(job: dict) -> dict:
    """One DPO run (align/dpo.py, TRL) and its held-out evaluation; never raises: a failure
    is a row with status 'error' and the error's last lines."""
    import traceback

    from ..align.dpo import align

    t0 = time.perf_counter()
    row = {**job["meta"], "status": "ok", "started_unix": round(time.time(), 1)}
    try:
        acfg = AlignConfig(**job["align"])
        m = align(Path(job["train"]), acfg, Path(job["run_dir"]), job["seed"])
        row.update({"steps": m["steps"], "train_runtime_s": m["train_runtime_s"],
                    "s_per_step": m["s_per_step"], "train_loss": m["train_loss"],
                    "n_dropped_too_long": m["n_dropped_too_long"],
                    "n_prompts_truncated": m["n_prompts_truncated"]})
        te = time.perf_counter()
        row.update(_evaluate(job, acfg, m["model_dir"]))
        row["eval_s"] = round(time.perf_counter() - te, 2)
        if not job["keep_model"]:
            shutil.rmtree(m["model_dir"], ignore_errors=True)
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the curve
        row.update({"status": "error", "error": f"{type(e).__name__}: {e}",
                    "traceback_tail": traceback.format_exc()[-2000:]})
    finally:
        shutil.rmtree(Path(job["run_dir"]) / "trainer", ignore_errors=True)
        _free_device()
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    row.update(_peak_mem(job["device"]))
    return row


def _free_device() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _peak_mem(device: str) -> dict:
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return {}
    return {"torch_peak_alloc_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def write_row(fh, row: dict) -> None:
    """One JSON line, flushed to disk at once (a killed driver keeps every finished run)."""
    import os

    fh.write(json.dumps(row, default=float) + "\n")
    fh.flush()
    os.fsync(fh.fileno())
