"""The experiment grid on real bundled data (one small cell), DPO level on a tiny policy."""

import json

import pandas as pd
import pytest

from pdselect.config import load_config
from pdselect.experiments.grid import run_experiment
from pdselect.align.policy import tiny_llama


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    policy = tiny_llama(tmp / "tiny")
    cfg = load_config(None, [
        "experiment.datasets=[usr_persona_chat]", "experiment.conflict_levels=[0.3]",
        "experiment.seeds=[0]", "experiment.budgets=[0.3]", "experiment.probe_l2=[0.01]",
        "experiment.dpo_datasets=[usr_persona_chat]", "experiment.dpo_conflict_levels=[0.3]",
        "experiment.dpo_methods=[ALL, PD, IRG]", f"align.policy={policy}", "align.max_steps=1",
        "align.max_length=64", "align.batch_size=2", "proxy.epochs=100"])
    info = run_experiment(cfg, tmp / "out", command="pytest")
    return tmp / "out", info


def test_every_method_has_a_row_with_metrics(grid):
    out, info = grid
    rows = pd.DataFrame(json.loads((out / "results.json").read_text()))
    assert set(rows["method"]) == {"ALL", "OVA", "AVG", "DFPO", "RAND", "RAF", "PD-rati", "PD",
                                   "PD-high", "PD-nl", "IRG"}
    sub = rows[rows["method"] != "IRG"]
    assert sub["probe_l2=0.01"].between(0, 1).all()
    # the 30% conflict level was hit on the pool, and OVA/AVG relabelled every pair
    assert rows["pool_conflict_rate"].iloc[0] == pytest.approx(0.3, abs=0.01)
    assert (rows.set_index("method").loc[["OVA", "AVG"], "conflict_rate"] == 0).all()
    pd_row = rows[rows["method"] == "PD"].iloc[0]
    high = rows[rows["method"] == "PD-high"].iloc[0]
    assert pd_row["auc"] == pytest.approx(1 - high["auc"])
    assert pd_row["conflict_rate"] < high["conflict_rate"]
    dpo = rows.dropna(subset=["dpo_implicit_acc"])
    assert set(dpo["method"]) == {"ALL", "PD", "IRG"}
    assert dpo["dpo_implicit_acc"].between(0, 1).all()


def test_outputs_tables_and_plots(grid):
    out, _ = grid
    md = (out / "results.md").read_text()
    assert "Command: `pytest`" in md and "PD@30%" in md and "dpo_implicit_acc" in md
    for png in ("conflict_robustness_auc.png", "budget_curve_probe_l2=0.01.png",
                "pd_histogram_usr_persona_chat.png",
                "aspect_conflict_matrix_usr_persona_chat.png"):
        assert (out / png).stat().st_size > 1000, png
    summary = json.loads((out / "summary.json").read_text())
    assert {"auc_mean", "auc_std", "n_seeds"} <= set(summary[0])


def test_unsupported_cells_are_recorded_as_skipped_and_the_grid_resumes(tmp_path):
    cfg = load_config(None, ["experiment.datasets=[usr_persona_chat]", "experiment.seeds=[0]",
                             "experiment.conflict_levels=[null]",
                             "aggregate.min_pairs_per_aspect=100000"])
    info = run_experiment(cfg, tmp_path, command="pytest")
    assert info["n_rows"] == 0 and len(info["skipped_cells"]) == 1
    assert "too few train pairs" in info["skipped_cells"][0]["reason"]
    assert "Skipped cell usr_persona_chat" in (tmp_path / "results.md").read_text()
    cell = tmp_path / "cells" / "usr_persona_chat_natural_seed0.json"
    assert cell.exists()
    stamp = cell.stat().st_mtime_ns
    run_experiment(cfg, tmp_path, command="pytest")  # resumed: the cell is not recomputed
    assert cell.stat().st_mtime_ns == stamp
