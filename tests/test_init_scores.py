"""`pdselect init` on a file with the user's scores beside the ratings: the scores are recognised
as scores (proxy.backend=scores), not as aspects; a score-like name with no rating beside it is
flagged as a question, not silently guessed."""

import numpy as np
import pandas as pd
import yaml

from pdselect.cli import main
from pdselect.config import load_config

from test_reward_scores import A, make_data


def data_with_scores(tmp_path, which=A, extra=()):
    df, scores = make_data(tmp_path, n_inputs=30)
    for a in which:
        df[f"{a}_score"] = scores[f"my_{a}"].to_numpy()
    for name in extra:
        df[name] = np.linspace(0.1, 0.9, len(df))
    df["rm_overall"] = df[list(A)].mean(1) + 0.1
    df.to_csv(tmp_path / "mine.csv", index=False)
    return tmp_path / "mine.csv"


def test_init_maps_score_columns_and_the_run_uses_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data_with_scores(tmp_path)
    assert main(["-q", "init", "--data", "mine.csv", "--out", "mine.yaml"]) == 0
    text = (tmp_path / "mine.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert sorted(cfg["data"]["aspects"]) == sorted(A)
    assert cfg["proxy"]["backend"] == "scores"
    assert cfg["proxy"]["score_columns"] == {**{a: f"{a}_score" for a in A},
                                             "unified": "rm_overall"}
    assert "looks like a SCORE of aspect 'helpful'" in text
    assert main(["-q", "run", "-c", "mine.yaml", f"run_dir={tmp_path / 'run'}"]) == 0
    sel = pd.read_parquet(tmp_path / "run" / "select" / "selection.parquet")
    assert sel["selected"].sum() > 0


def test_partial_scores_keep_the_default_proxy_and_say_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data_with_scores(tmp_path, which=A[:2], extra=("armo_score",))
    assert main(["-q", "init", "--data", "mine.csv", "--out", "mine.yaml"]) == 0
    text = (tmp_path / "mine.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["proxy"]["backend"] == "frozen_encoder"
    assert "CHECK: score columns found for" in text and "'brief'" in text
    # a score-like name with no rating beside it: kept, and asked about
    assert "armo_score" in cfg["data"]["aspects"]
    assert "a rating or your model's score?" in text
    load_config(str(tmp_path / "mine.yaml")).validate()
