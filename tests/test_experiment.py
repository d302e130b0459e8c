"""The experiment grid on real bundled data (one small cell), DPO level on a tiny policy."""

import json

import numpy as np
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
                                   "PD-high", "PD-nl", "IRG", "LONGER"}
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
    assert set(dpo["method"]) == {"ALL", "PD", "IRG", "LONGER"}
    assert dpo["dpo_implicit_acc"].between(0, 1).all()
    # length-controlled companions: the strata's mean, and the length rule's row
    for level in ("probe_l2=0.01", "dpo"):
        r = dpo.set_index("method")
        np.testing.assert_allclose((r[f"{level}_acc_longer"] + r[f"{level}_acc_shorter"]) / 2,
                                   r[f"{level}_balanced"], rtol=0, atol=1e-12)
        assert r.loc["LONGER", f"{level}_balanced"] == 0.5
        assert r.loc["LONGER", f"{level}_acc_longer"] == 1.0
    longer = rows.set_index("method").loc["LONGER"]
    assert longer["probe_l2=0.01"] > 0.5  # "longer wins" beats chance on USR


def test_outputs_tables_and_plots(grid):
    out, _ = grid
    md = (out / "results.md").read_text()
    assert "Command: `pytest`" in md and "PD@30%" in md and "dpo_implicit_acc" in md
    assert "dpo_implicit_acc, length-controlled (conflict 0.3)" in md and "| LONGER |" in md
    assert "probe_l2=0.01_balanced" not in md.split("length-controlled")[0]  # not a main table
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


def test_length_rule_and_columns_hand_computed():
    """probe.length_columns / length_rule_correct / preferred_length_gap on 6 pairs."""
    from pdselect.experiments.probe import (length_columns, length_rule_correct,
                                            overall_correct, preferred_length_gap)

    test = pd.DataFrame({"len_chosen": [10, 30, 20, 5, 8, 8],
                         "len_rejected": [20, 10, 20, 9, 4, 1]})
    od = [1.0, 1.0, 1.0, -1.0, -1.0, 0.0]          # last pair: overall tie, left out
    gap = preferred_length_gap(test, od)
    assert gap[:5].tolist() == [-10, 20, 0, 4, -4] and np.isnan(gap[5])
    rule = length_rule_correct(gap)
    assert rule[:5].tolist() == [0, 1, 0.5, 1, 0]
    # a reward model: r_c - r_r = +1 on every pair -> right where the overall prefers chosen
    c = overall_correct(np.ones(6), np.zeros(6), od)
    assert c[:5].tolist() == [1, 1, 1, 0, 0] and np.isnan(c[5])
    cols = length_columns("x", c, gap)
    # preferred longer: pairs 2, 4 -> 1, 0; shorter: pairs 1, 5 -> 1, 0; equal length: pair 3
    assert cols["x_acc_longer"] == 0.5 and cols["x_acc_shorter"] == 0.5
    assert cols["x_balanced"] == 0.5
    rule_cols = length_columns("x", rule, gap)
    assert (rule_cols["x_acc_longer"], rule_cols["x_acc_shorter"]) == (1.0, 0.0)
