"""proxy.backend=scores: the user's own per-aspect scores drive PD, every selector, the hand-off
and the report; nothing is trained or loaded; bad score files stop with file, line and column."""

import json
import random

import numpy as np
import pandas as pd
import pytest

from pdselect.cli import main
from pdselect.config import load_config
from pdselect.errors import StageError
from pdselect.pipeline import run_pipeline
from pdselect.reward.fixed import agreement_metrics, StandardisedMean
from pdselect.reward.scores import build_table, text_key

A = ["helpful", "honest", "brief"]


def make_data(tmp_path, n_inputs=24, noise=0.7, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n_inputs):
        for j in range(4):
            r = {"input_id": f"q{i}", "input": f"question {i}?", "response_id": f"q{i}-r{j}",
                 "response": f"answer {j} to {i}" + " more" * rng.randint(0, 5),
                 **{a: rng.randint(1, 5) for a in A}}
            r["overall"] = sum(r[a] for a in A) + rng.randint(0, 2)
            rows.append(r)
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "data.csv", index=False)
    scores = df[["input", "response", "input_id", "response_id"]].copy()
    for a in A:
        scores[f"my_{a}"] = df[a] + np.asarray([rng.gauss(0, noise) for _ in range(len(df))])
    return df, scores


def overrides(tmp_path, scores_path, *extra):
    return [f"run_dir={tmp_path / 'run'}", "data.source=generic",
            f"data.path={tmp_path / 'data.csv'}", "data.aspects=[helpful,honest,brief]",
            "proxy.backend=scores", f"proxy.scores_path={scores_path}",
            "proxy.score_columns={helpful: my_helpful, honest: my_honest, brief: my_brief}",
            *extra]


def run(tmp_path, scores_path, *extra):
    cfg = load_config(None, overrides(tmp_path, scores_path, *extra))
    return run_pipeline(cfg)


def test_the_users_scores_are_the_gaps_pd_and_selection_use(tmp_path):
    df, scores = make_data(tmp_path)
    scores.drop(columns=["input_id", "response_id"]).to_csv(tmp_path / "s.csv", index=False)
    root = run(tmp_path, tmp_path / "s.csv")
    inspect = pd.read_parquet(root / "select" / "inspect.parquet")
    by_text = {(r.input, r.response): r for r in scores.itertuples()}
    for row in inspect.head(20).itertuples():
        w, lose = by_text[(row.prompt, row.chosen)], by_text[(row.prompt, row.rejected)]
        for a in A:
            assert getattr(row, f"gap__{a}") == pytest.approx(
                getattr(w, f"my_{a}") - getattr(lose, f"my_{a}"), abs=1e-12)
    # PD from these gaps: -(sum of the OTHER aspects' clipped normalised gaps)
    score = pd.read_parquet(root / "score" / "scores.parquet")
    norms = score[[f"norm__{a}" for a in A]].to_numpy()
    own = score["aspect"].map({a: i for i, a in enumerate(A)}).to_numpy()
    expect = -(norms.sum(1) - norms[np.arange(len(score)), own])
    np.testing.assert_allclose(score["pd"], expect, atol=1e-6)  # pd is stored as float32
    # nothing trained: no encoder cache written, metrics say score-only
    metrics = json.loads((root / "proxy" / "metrics.json").read_text())
    assert all(m["n_train"] == 0 and m["backend"] == "scores"
               for m in metrics["aspects"].values())
    assert all(m["val_accuracy"] > 0.8 for m in metrics["aspects"].values())
    # the unified reward: standardised mean of the aspect scores (no 'unified' column given)
    unified = json.loads((root / "proxy" / "unified" / "scores.json").read_text())
    sd = [scores[f"my_{a}"].std(ddof=0) for a in A]
    np.testing.assert_allclose(unified["scale"], sd, rtol=1e-9)
    margin = pd.read_parquet(root / "score" / "scores.parquet")["margin"].to_numpy()
    gaps = pd.read_parquet(root / "score" / "scores.parquet")[[f"gap__{a}" for a in A]]
    np.testing.assert_allclose(margin, (gaps.to_numpy() / sd).mean(1), rtol=1e-9)
    report = (root / "report.md").read_text()
    assert "helpful" in report and "not better than chance" not in report


def test_scores_by_ids_and_in_the_data_file_itself(tmp_path):
    df, scores = make_data(tmp_path)
    # ids only (no texts): matched through the ingest stage's rated table
    scores[["input_id", "response_id", *[f"my_{a}" for a in A]]].to_parquet(tmp_path / "s.parquet")
    root_ids = run(tmp_path, tmp_path / "s.parquet")
    g_ids = pd.read_parquet(root_ids / "score" / "scores.parquet")
    meta = json.loads((root_ids / "proxy" / "aspects" / "scores.json").read_text())
    assert meta["matched_by"] == "input_id + response_id"
    # the same scores as columns of the data file (scores_path empty = data.path)
    both = df.merge(scores[["response_id", *[f"my_{a}" for a in A]]], on="response_id")
    both.to_csv(tmp_path / "data.csv", index=False)
    cfg = load_config(None, overrides(tmp_path, "", f"run_dir={tmp_path / 'run2'}"))
    g_file = pd.read_parquet(run_pipeline(cfg) / "score" / "scores.parquet")
    pd.testing.assert_frame_equal(g_ids.sort_values("pair_id").reset_index(drop=True),
                                  g_file.sort_values("pair_id").reset_index(drop=True),
                                  check_exact=False, atol=1e-9)


def test_per_pair_gaps_either_orientation(tmp_path):
    df, scores = make_data(tmp_path)
    s = scores.set_index("response_id")
    rows = []
    for q, g in df.groupby("input_id"):
        ids = g["response_id"].tolist()
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                a, b = (ids[i], ids[j]) if (i + j) % 2 else (ids[j], ids[i])  # mixed order
                rows.append({"prompt": s.at[a, "input"], "chosen": s.at[a, "response"],
                             "rejected": s.at[b, "response"],
                             **{f"my_{x}": s.at[a, f"my_{x}"] - s.at[b, f"my_{x}"] for x in A}})
    pd.DataFrame(rows).to_json(tmp_path / "gaps.jsonl", orient="records", lines=True)
    root = run(tmp_path, tmp_path / "gaps.jsonl")
    pair_gaps = pd.read_parquet(root / "score" / "scores.parquet").sort_values("pair_id")
    scores.drop(columns=["input_id", "response_id"]).to_csv(tmp_path / "s.csv", index=False)
    cfg = load_config(None, overrides(tmp_path, tmp_path / "s.csv", f"run_dir={tmp_path / 'r2'}"))
    resp = pd.read_parquet(run_pipeline(cfg) / "score" / "scores.parquet").sort_values("pair_id")
    for a in A:
        np.testing.assert_allclose(pair_gaps[f"gap__{a}"], resp[f"gap__{a}"], atol=1e-9)
    assert json.loads((root / "proxy" / "aspects" / "scores.json").read_text())["kind"] == "pair"


@pytest.mark.parametrize("break_it, message", [
    (lambda s: s.iloc[5:], "have no score"),
    (lambda s: s.assign(my_honest=s["my_honest"].astype(object).where(s.index != 3, "high")),
     "line 5, column 'my_honest'"),
    (lambda s: pd.concat([s, s.iloc[[7]].assign(my_brief=99.0)]), "different scores"),
    (lambda s: s.drop(columns=["my_brief"]), "column 'my_brief'"),
])
def test_bad_score_files_name_file_line_and_column(tmp_path, break_it, message):
    _, scores = make_data(tmp_path)
    break_it(scores.drop(columns=["input_id", "response_id"])).to_csv(tmp_path / "s.csv",
                                                                       index=False)
    with pytest.raises(StageError, match=message) as e:
        run(tmp_path, tmp_path / "s.csv")
    assert "s.csv" in str(e.value) and "Fix" in str(e.value) or "have no score" in message


def test_unknown_aspect_in_score_columns_is_an_error(tmp_path):
    _, scores = make_data(tmp_path)
    scores.to_csv(tmp_path / "s.csv", index=False)
    rc = main(["-q", "run", "-c", "configs/demo.yaml", *overrides(
        tmp_path, tmp_path / "s.csv", "proxy.score_columns.helpfulness=my_helpful")])
    assert rc != 0


def test_training_settings_are_refused_with_a_score_only_backend(tmp_path):
    _, scores = make_data(tmp_path)
    scores.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(Exception, match="proxy.cross_fit"):
        load_config(None, overrides(tmp_path, tmp_path / "s.csv", "proxy.cross_fit=5")).validate()


def test_agreement_metrics_hand_computed():
    pairs = pd.DataFrame({"aspect": ["a", "a", "a", "b"], "input_id": ["x", "x", "y", "y"]})
    gaps = np.array([[1.0, -1], [-0.5, 2], [0.0, 3], [5, -2]])
    m = agreement_metrics(gaps, pairs, ["a", "b"], "scores")
    assert m["a"]["val_accuracy"] == pytest.approx(1 / 3)  # a tie is not agreement
    assert m["a"]["n_val"] == 3 and m["b"]["val_accuracy"] == 0.0
    lo, hi = m["a"]["val_accuracy_ci95"]
    assert lo == pytest.approx(0.0615, abs=1e-3) and hi == pytest.approx(0.7923, abs=1e-3)


def test_standardised_mean_is_fixed_at_fit():
    class Inner:
        backend = "fake"
        table = {"a": [1.0, 10.0], "b": [2.0, 10.0], "c": [3.0, 40.0]}

        def rewards(self, inputs, responses, progress=False):
            return np.array([self.table[r] for r in responses])

    u = StandardisedMean.fit(Inner(), ["i"] * 3, list("abc"))
    # x: mean 2, sd sqrt(2/3); y: mean 20, sd sqrt(200)
    want = ((3 - 2) / np.sqrt(2 / 3) + (40 - 20) / np.sqrt(200)) / 2
    assert u.rewards(["i"], ["c"])[0, 0] == pytest.approx(want)
    assert u.rewards(["i", "i"], ["c", "a"])[0, 0] == pytest.approx(want)  # batch-independent


def test_text_keys_ignore_surrounding_whitespace_and_render_chat_lists():
    assert text_key(" q ", "r\n") == text_key("q", "r")
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    assert text_key(msgs, "r") == text_key("user: Hi\nassistant: Yo", "r")
    df = pd.DataFrame({"input": ["q"], "response": ["r"], "s_a": [1.0]})
    table, meta = build_table(df, ["a"], {"a": "s_a"}, "auto", "f.csv", None)
    assert meta["kind"] == "response" and len(table) == 1


def test_editing_the_score_file_reruns_the_proxy_stage(tmp_path):
    _, scores = make_data(tmp_path, n_inputs=12)
    s = scores.drop(columns=["input_id", "response_id"])
    s.to_csv(tmp_path / "s.csv", index=False)
    root = run(tmp_path, tmp_path / "s.csv")
    before = pd.read_parquet(root / "score" / "scores.parquet")
    s.assign(my_helpful=-s["my_helpful"]).to_csv(tmp_path / "s.csv", index=False)
    after = pd.read_parquet(run(tmp_path, tmp_path / "s.csv") / "score" / "scores.parquet")
    np.testing.assert_allclose(after["gap__helpful"], -before["gap__helpful"], atol=1e-12)


def test_ray_engine_scores_the_users_scores_like_the_local_engine(tmp_path):
    pytest.importorskip("ray", reason="ray[data] not installed")
    _, scores = make_data(tmp_path, n_inputs=12)
    scores.drop(columns=["input_id", "response_id"]).to_csv(tmp_path / "s.csv", index=False)
    local = run(tmp_path, tmp_path / "s.csv", "score.shard_size=40")
    try:
        ray_root = run(tmp_path, tmp_path / "s.csv", f"run_dir={tmp_path / 'ray'}",
                       "score.shard_size=40", "score.engine=ray", "score.ray_actors=1")
    finally:
        import ray

        ray.shutdown()
    a = pd.read_parquet(local / "select" / "selection.parquet")
    b = pd.read_parquet(ray_root / "select" / "selection.parquet")
    pd.testing.assert_frame_equal(a, b)
