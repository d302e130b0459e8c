"""End to end on bundled real data, through the CLI: every stage, artifacts, resume, quality."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from pdselect.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    rc = main(["-q", "run", "-c", "configs/demo.yaml", f"run_dir={run_dir}"])
    assert rc == 0
    return run_dir


def test_every_stage_wrote_its_artifacts(demo_run):
    for stage in ("ingest", "aggregate", "proxy", "score", "select"):
        assert (demo_run / stage / "_SUCCESS").exists(), stage
    for f in ("config.yaml", "manifest.json", "report.md", "report.json", "report.html",
              "ingest/rated.parquet", "aggregate/pairs.parquet", "score/scores.parquet",
              "score/pd_rati.parquet", "select/selection.parquet", "select/inspect.parquet",
              "select/dpo/train-00000.parquet", "report/pd_histogram.png"):
        assert (demo_run / f).exists(), f
    manifest = json.loads((demo_run / "manifest.json").read_text())
    assert set(manifest["stages"]) >= {"ingest", "aggregate", "proxy", "score", "select", "report"}
    assert manifest["environment"]["versions"]["torch"]


def test_selection_and_trl_dataset(demo_run):
    sel = pd.read_parquet(demo_run / "select" / "selection.parquet")
    pairs = pd.read_parquet(demo_run / "aggregate" / "pairs.parquet")
    n_train = (pairs["split"] == "train").sum()
    assert len(sel) == n_train and sel["selected"].sum() == -(-3 * n_train // 10)
    # PD selection = the most negative PD, ties by pair_id
    kept = sel[sel["selected"]]
    assert kept["pd"].max() <= sel.loc[~sel["selected"], "pd"].min()
    from datasets import load_dataset

    # the folder alone loads (what `trl dpo --dataset_name <run>/select/dpo` does)
    ds = load_dataset(str(demo_run / "select" / "dpo"), split="train")
    assert {"prompt", "chosen", "rejected", "aspect", "pd", "rank"} <= set(ds.column_names)
    assert ds["pair_id"] == kept.sort_values("rank")["pair_id"].tolist()
    assert len(ds) == sel["selected"].sum()
    # no test input leaks into the training selection
    test_inputs = set(pairs.loc[pairs["split"] == "test", "input"])
    assert not test_inputs & set(ds["prompt"])


def test_quality_bar_pd_beats_random(demo_run):
    rep = json.loads((demo_run / "report.json").read_text())
    comp = rep["selection"]["comparison"]
    assert comp["pd"]["conflict_rate"] < comp["random"]["conflict_rate"]
    assert comp["pd"]["auc"] > 0.7 and comp["pd_rati"]["auc"] > 0.9
    assert comp["pd_high"]["auc"] == pytest.approx(1 - comp["pd"]["auc"])


def test_rerun_skips_finished_stages(demo_run, caplog):
    before = (demo_run / "score" / "scores.parquet").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        assert main(["run", "-c", "configs/demo.yaml", f"run_dir={demo_run}"]) == 0
    assert (demo_run / "score" / "scores.parquet").stat().st_mtime_ns == before
    assert "skipped" in caplog.text


def test_the_card_carries_the_verdict_and_a_rerun_keeps_select(demo_run, caplog):
    """The report stage amends the select stage's dataset card with its verdict; that must not
    make the next run think select's artifacts are corrupt and redo it."""
    card = (demo_run / "select" / "dpo" / "README.md").read_text()
    verdict = json.loads((demo_run / "report.json").read_text())["verdict"]
    assert verdict["text"][:40] in card
    with caplog.at_level("INFO"):
        assert main(["run", "-c", "configs/demo.yaml", f"run_dir={demo_run}"]) == 0
    assert "corrupt" not in caplog.text and "select    skipped" in caplog.text


def test_changed_config_reruns_only_the_affected_stages(demo_run, caplog):
    agg = (demo_run / "aggregate" / "pairs.parquet").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        assert main(["run", "-c", "configs/demo.yaml", f"run_dir={demo_run}",
                     "select.budget=0.5"]) == 0
    assert (demo_run / "aggregate" / "pairs.parquet").stat().st_mtime_ns == agg
    assert "select    config changed" in caplog.text
    sel = pd.read_parquet(demo_run / "select" / "selection.parquet")
    assert sel["selected"].sum() == -(-sel.shape[0] // 2)
    # and back: the original budget is restored by the same mechanism
    assert main(["-q", "run", "-c", "configs/demo.yaml", f"run_dir={demo_run}"]) == 0


def test_single_stage_rerun_invalidates_later_stages(demo_run):
    assert main(["-q", "select", "-c", "configs/demo.yaml", f"run_dir={demo_run}",
                 "--force"]) == 0
    assert (demo_run / "select" / "_SUCCESS").exists()
    assert not (demo_run / "report" / "_SUCCESS").exists()


def test_cli_entry_point_and_errors():
    out = subprocess.run([sys.executable, "-m", "pdselect.cli", "run", "select.budgte=0.2"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "did you mean 'budget'" in out.stderr


def test_align_and_eval_stages_on_the_selection(demo_run, tmp_path):
    from pdselect.align.policy import tiny_llama

    policy = tiny_llama(tmp_path / "tiny")
    over = [f"run_dir={demo_run}", f"align.policy={policy}", "align.max_steps=2",
            "align.max_length=64", "align.batch_size=2", "eval.n_generate=2",
            "eval.max_new_tokens=8", "eval.probe_l2=[0.01]"]
    assert main(["-q", "run", "-c", "configs/demo.yaml"] + over) == 0
    assert main(["-q", "align", "-c", "configs/demo.yaml"] + over) == 0
    m = json.loads((demo_run / "align" / "metrics.json").read_text())
    assert m["steps"] == 2 and 0 <= m["eval"]["accuracy"] <= 1 and m["eval"]["n"] > 50
    assert main(["-q", "eval", "-c", "configs/demo.yaml"] + over) == 0
    ev = json.loads((demo_run / "eval" / "metrics.json").read_text())
    assert 0 <= ev["probe"]["selection"]["0.01"] <= 1
    gen = ev["policy"]["generations"]
    assert gen["n_prompts"] == 2 and "judge_gain" in gen and gen["aligned"]["mean_chars"] >= 0


def test_changing_the_policy_length_reruns_the_token_check(demo_run, caplog):
    """select's token check reads align.max_length: a new length must not leave it stale."""
    with caplog.at_level("INFO"):
        assert main(["run", "-c", "configs/demo.yaml", f"run_dir={demo_run}",
                     "align.max_length=512"]) == 0
    assert "select    config changed" in caplog.text or "select    done" in caplog.text
    meta = json.loads((demo_run / "select" / "meta.json").read_text())
    check = meta.get("token_check")
    assert check is None or check["max_length"] == 512
