"""A user's own data, first try: both table shapes, names that need no mapping, every config
problem at once, `key=null`, hub keys, HelpSteer2's preference file, HelpSteer3, binarized and
single-aspect data, and the default hold-out."""

import gzip
import json
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdselect.aggregate.pairs import aggregate, build_pairs, holdout_rule
from pdselect.config import AggregateConfig, DataConfig, load_config
from pdselect.data import read_source
from pdselect.errors import InputError
from pdselect.data.rejects import RejectLog
from pdselect.validate import validate

ASPECTS = ["helpful", "honest", "brief"]


def rows(n_inputs=12, n_resp=4, seed=0, overall=True):
    rng = random.Random(seed)
    out = []
    for i in range(n_inputs):
        for j in range(n_resp):
            r = {"input_id": f"q{i}", "input": f"question {i}?",
                 "response": f"answer {j} to {i}" + " more" * j,
                 **{a: rng.randint(1, 5) for a in ASPECTS}}
            if overall:
                r["overall"] = rng.randint(1, 10)
            out.append(r)
    return out


def to_long(wide: list[dict], overall_as_row=True) -> list[dict]:
    out = []
    for r in wide:
        base = {"input_id": r["input_id"], "prompt": r["input"], "response": r["response"]}
        for a in ASPECTS + (["overall"] if "overall" in r and overall_as_row else []):
            out.append({**base, "aspect": a, "rating": r[a]})
    return out


def jsonl(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def read(path, **kw):
    rej = RejectLog("ingest")
    return read_source(DataConfig(source="generic", path=str(path), **kw), rej), rej


def sorted_df(t):
    return t.df.sort_values("response_id").reset_index(drop=True)


# ----------------------------------------------------------------------------- no mapping
def test_wide_columns_named_canonically_need_no_mapping(tmp_path):
    f = tmp_path / "w.csv"
    pd.DataFrame(rows()).to_csv(f, index=False)
    t, rej = read(f, aspects=ASPECTS)  # no data.columns, no data.aspect_columns
    assert t.aspects == ASPECTS and t.has_overall and rej.total == 0
    assert t.df["input_id"].nunique() == 12 and len(t.df) == 48
    # `prompt` is the input when there is no `input` column
    df = pd.DataFrame(rows()).rename(columns={"input": "prompt"})
    df.to_csv(f, index=False)
    t2, _ = read(f, aspects=ASPECTS)
    pd.testing.assert_frame_equal(sorted_df(t), sorted_df(t2))


def test_long_shape_is_detected_and_equals_the_wide_table(tmp_path):
    wide = rows()
    f = tmp_path / "w.jsonl"
    jsonl(f, wide)
    t_wide, _ = read(f, aspects=ASPECTS)
    g = jsonl(tmp_path / "long.jsonl", to_long(wide))
    t_long, rej = read(g)  # prompt/response/aspect/rating, overall as an aspect row: no config
    assert rej.total == 0 and t_long.has_overall and t_long.aspects == ASPECTS
    a, b = sorted_df(t_wide), sorted_df(t_long)
    assert (a["response_id"] == b["response_id"]).all()
    pd.testing.assert_frame_equal(a[ASPECTS + ["overall"]], b[ASPECTS + ["overall"]])
    # the same through an overall COLUMN repeated on every row, and an explicit shape
    recs = [{**r, "overall": w["overall"]} for w in wide for r in to_long([w], False)]
    t3, _ = read(jsonl(tmp_path / "long2.jsonl", recs), shape="long")
    pd.testing.assert_frame_equal(a[ASPECTS + ["overall"]], sorted_df(t3)[ASPECTS + ["overall"]])


def test_long_shape_rejects_and_counts_row_problems(tmp_path):
    recs = to_long(rows(n_inputs=3, overall=False))
    recs.append(dict(recs[0], rating=1))  # a second `helpful` rating (a second rater)
    recs.append(dict(recs[1], aspect=""))  # no aspect
    f = jsonl(tmp_path / "l.jsonl", recs)
    t, rej = read(f, aspects=["helpful", "honest"])  # `brief` rows are left out, counted
    assert t.aspects == ["helpful", "honest"] and not t.has_overall
    c = rej.counts()
    # issue 17: the two raters' ratings are averaged (the mqm rule), not the first kept
    assert c["response rated on several rows per aspect: ratings averaged (kept, not "
             "dropped)"] == 1
    assert c["empty aspect"] == 1 and c["aspect not selected (data.aspects)"] == 12
    first = t.df.sort_values("response_id").set_index("response_id")
    rid = [i for i in first.index if i.endswith(":" + __import__("pdselect.data.rows",
           fromlist=["short_hash"]).short_hash(recs[0]["response"], 8))][0]
    assert first.loc[rid, "helpful"] == (recs[0]["rating"] + 1) / 2
    # the overall column must agree across a response's rows
    bad = [dict(r, overall=5) for r in to_long(rows(n_inputs=2, overall=False))]
    bad[1]["overall"] = 6
    t, rej = read(jsonl(tmp_path / "o.jsonl", bad))
    # the row is rejected, so that response's `honest` rating is then missing (counted)
    assert rej.counts() == {"overall differs between the rows of one response": 1,
                            "rating missing (honest)": 1}


def test_long_mapping_with_other_names(tmp_path):
    recs = [{"q": r["prompt"], "a": r["response"], "criterion": r["aspect"], "score": r["rating"]}
            for r in to_long(rows(n_inputs=4, overall=False))]
    f = tmp_path / "l.csv"
    pd.DataFrame(recs).to_csv(f, index=False)
    t, _ = read(f, columns={"input": "q", "response": "a", "aspect": "criterion"})
    assert t.aspects == ASPECTS and len(t.df) == 16  # `score` is a default rating name


# ----------------------------------------------------------------------------- problems at once
def test_every_mapping_problem_of_a_file_is_reported_at_once(tmp_path):
    f = tmp_path / "d.jsonl"
    jsonl(f, [{"question": "q", "answer": "a", "accuracy": 3, "style": 2}])
    with pytest.raises(InputError) as e:
        read(f, columns={"input": "questoin", "response": "answr", "oveall": "x"},
             aspect_columns={"acc": "acuracy", "style": "style"}, aspects=["acc", "tone"],
             scales={"nope": [1, 5]})
    msg = str(e.value)
    assert msg.startswith(f"{f} field 'data.columns': 6 problems")
    for part in ["(1) data.columns.oveall: unknown canonical name (did you mean 'overall'?)",
                 "data.columns.input: column 'questoin' is not in the file (closest column: "
                 "'question')", "data.columns.response: column 'answr' is not in the file "
                 "(closest column: 'answer')", "data.aspect_columns.acc: column 'acuracy' is "
                 "not in the file (closest column: 'accuracy')",
                 "data.aspects: 'tone' is not a column", "data.scales.nope",
                 "Columns in the file: question, answer, accuracy, style"]:
        assert part in msg, part
    assert "source '" not in msg  # the hint is a column of this file, not another reader
    # what validate shows: the same single message
    cfg = load_config(None, ["data.source=generic", f"data.path={f}",
                             "data.columns={input: questoin, response: answer}",
                             "data.aspects=[accuracy, style]"])
    rep = validate(cfg, full=True)
    assert not rep.ok and "1 problem with" in rep.render() and "'question'" in rep.render()


def test_null_override_unsets_a_mapping(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  source: generic\n  path: x.jsonl\n  columns: {input: q, "
                        "response: a, overall: score}\n  scales: {overall: [1, 10]}\n")
    cfg = load_config(cfg_file, ["data.columns.overall=null"])
    assert cfg.data.columns == {"input": "q", "response": "a"}
    assert load_config(cfg_file, ["data.columns=null"]).data.columns == {}
    assert load_config(cfg_file, ["data.scales.overall=null"]).data.scales == {}


def test_hub_revision_config_and_data_dir_reach_load_dataset(monkeypatch):
    import datasets

    seen = []

    def fake(path, **kw):
        seen.append((path, kw))
        return [{"prompt": "p", "response": f"r{i}", "a": i % 3, "b": i % 2} for i in range(4)]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    t, _ = read("org/my-ratings", aspects=["a", "b"], revision="abc123", config="en",
                data_dir="ratings", hf_split="validation")
    assert len(t.df) == 4
    assert seen[-1] == ("org/my-ratings", {"split": "validation", "name": "en",
                                           "revision": "abc123", "data_dir": "ratings"})
    read("org/my-ratings", aspects=["a", "b"])
    assert seen[-1] == ("org/my-ratings", {"split": "train"})  # unset keys are not passed


def test_gzipped_csv_and_tsv(tmp_path):
    df = pd.DataFrame(rows(n_inputs=3))
    f = tmp_path / "d.tsv.gz"
    f.write_bytes(gzip.compress(df.to_csv(index=False, sep="\t").encode()))
    t, _ = read(f, aspects=ASPECTS)
    assert len(t.df) == 12 and t.has_overall


# ----------------------------------------------------------------------------- sources
def hs2(tmp_path, n=6):
    ratings, prefs = [], []
    for i in range(n):
        for j in (1, 2):
            ratings.append({"prompt": f"p{i}", "response": f"r{i}-{j}",
                            **{a: (i + j) % 5 for a in ["helpfulness", "correctness",
                                                       "coherence", "complexity"]},
                            "verbosity": j})
        prefs.append({"split": "train", "prompt": f"p{i}", "response_1": f"r{i}-1",
                      "response_2": f"r{i}-2", "preference_strength": [-3, -1, 0, 2, 3, 1][i % 6],
                      "preference_statement": "..."})
    d = tmp_path / "hs2"
    (d / "preference").mkdir(parents=True)
    jsonl(d / "train.jsonl", ratings)
    pref = d / "preference" / "preference.jsonl"
    jsonl(pref, prefs + [{"prompt": "elsewhere", "response_1": "x", "response_2": "y",
                          "preference_strength": 1}])
    return d, pref


def test_helpsteer2_preference_file_is_the_hidden_overall(tmp_path):
    d, pref = hs2(tmp_path)
    rej = RejectLog("ingest")
    t = read_source(DataConfig(source="helpsteer2", path=str(d / "train.jsonl"),
                               preference_path=str(pref)), rej)
    assert t.has_overall and t.scales["overall"] == (-3.0, 3.0)
    pairs = build_pairs(t, AggregateConfig(), 0, RejectLog("a"))
    assert len(pairs) == 6
    for _, p in pairs.iterrows():  # the pair's overall gap is the annotated strength
        i = int(p["input"][1:])
        strength = [-3, -1, 0, 2, 3, 1][i % 6]
        sign = 1 if p["chosen"].endswith("-2") else -1
        assert p["h_overall_delta"] == sign * strength
        assert np.isnan(p["h_agrees_overall"]) if strength == 0 else \
            p["h_agrees_overall"] == float(sign * strength > 0)
    # the downloaded repo folder: the preference records inside data.path are used the same way
    t2 = read_source(DataConfig(source="helpsteer2", path=str(d)), RejectLog("ingest"))
    pd.testing.assert_frame_equal(t.df.sort_values("response_id").reset_index(drop=True),
                                  t2.df.sort_values("response_id").reset_index(drop=True))
    # the preference file alone has no aspects: a clear error
    with pytest.raises(InputError, match="preference records .* but no per-aspect ratings.*"
                                         "data.preference_path"):
        read_source(DataConfig(source="helpsteer2", path=str(pref)), RejectLog("ingest"))
    # without it: no overall, as before
    t3 = read_source(DataConfig(source="helpsteer2", path=str(d / "train.jsonl")),
                     RejectLog("ingest"))
    assert not t3.has_overall and "overall" not in t3.df


def hs3_records(n=20, aspects=("helpfulness", "correctness")):
    rng = random.Random(3)
    out = []
    for i in range(n):
        rec = {"domain": "general", "language": "english",
               "context": [{"role": "user", "content": f"question {i}"},
                           {"role": "assistant", "content": "sure"},
                           {"role": "user", "content": "go on"}],
               "response1": f"first answer {i}", "response2": f"second answer {i} longer",
               "overall_preference": rng.randint(-3, 3),
               "individual_preference": [{"score": 1, "reasoning": "..."}]}
        rec.update({a: rng.randint(-3, 3) for a in aspects})
        out.append(rec)
    return out


def test_helpsteer3_pairs_with_overall(tmp_path):
    recs = hs3_records()
    f = jsonl(tmp_path / "hs3.jsonl", recs)
    cfg = DataConfig(source="helpsteer3", path=str(f),
                     aspect_columns={"helpfulness": "helpfulness", "correctness": "correctness"})
    t = read_source(cfg, RejectLog("ingest"))
    assert t.has_overall and t.aspects == ["helpfulness", "correctness"]
    assert t.df["input"].iloc[0] == "user: question 0\nassistant: sure\nuser: go on"
    pairs = build_pairs(t, AggregateConfig(), 0, RejectLog("a"))
    decided = [r for r in recs if r["helpfulness"] or r["correctness"]]
    assert len(pairs) == len(decided)  # one pair per record (tied ones dropped, counted)
    by_first = {r["response1"]: r for r in recs}
    for _, p in pairs.iterrows():
        r2_wins = p["chosen"].startswith("second")
        rec = by_first[p["rejected"] if r2_wins else p["chosen"]]
        sign = 1 if r2_wins else -1
        assert p["h_overall_delta"] == sign * rec["overall_preference"]
        assert p["h_delta__correctness"] == sign * rec["correctness"]
    with pytest.raises(InputError, match="no per-aspect label, and PD needs at least two"):
        read_source(DataConfig(source="helpsteer3", path=str(f)), RejectLog("ingest"))


def test_binarized_pairs_are_a_clear_error(tmp_path):
    f = jsonl(tmp_path / "b.jsonl", [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"}
                                     for i in range(3)])
    with pytest.raises(InputError, match="binarized preference set .* PD needs at least two "
                                         "aspects"):
        read_source(DataConfig(source="pairs", path=str(f)), RejectLog("ingest"))


def test_a_single_aspect_is_an_error_not_pd_zero_everywhere(tmp_path):
    f = tmp_path / "one.jsonl"
    jsonl(f, rows())
    cfg = load_config(None, ["data.source=generic", f"data.path={f}", "data.aspects=[helpful]",
                             f"run_dir={tmp_path / 'run'}"])
    rep = validate(cfg, full=True)
    assert not rep.ok and "PD needs at least two aspects, and the pairs have 1 ('helpful')" \
        in rep.render()
    from pdselect.cli import main

    assert main(["-q", "run", "data.source=generic", f"data.path={f}", "data.aspects=[helpful]",
                 f"run_dir={tmp_path / 'run'}"]) == 1
    assert not (tmp_path / "run" / "proxy").exists()


# ----------------------------------------------------------------------------- hold-out
def test_holdout_default_selects_from_all_pairs_without_an_overall(tmp_path):
    f = jsonl(tmp_path / "d.jsonl", rows(overall=False))
    t, _ = read(f, aspects=ASPECTS)
    pairs = aggregate(t, AggregateConfig(min_pairs_per_aspect=1), 0, RejectLog("a"))
    assert (pairs["split"] == "train").all()
    tf, text = holdout_rule(AggregateConfig(), t.has_overall, t.source)
    assert tf == 0 and text.startswith("none: every input's pairs are in the selection pool")
    # with an overall label: 30% of the inputs
    t, _ = read(jsonl(tmp_path / "o.jsonl", rows()), aspects=ASPECTS)
    pairs = aggregate(t, AggregateConfig(min_pairs_per_aspect=1), 0, RejectLog("a"))
    assert pairs.groupby("split")["input_id"].nunique()["test"] == 4  # ceil(0.3 * 12)
    assert holdout_rule(AggregateConfig(), True, "generic")[1].startswith("30% of inputs")
    # asked for: honoured either way
    t, _ = read(f, aspects=ASPECTS)
    pairs = aggregate(t, AggregateConfig(min_pairs_per_aspect=1, test_fraction=0.5), 0,
                      RejectLog("a"))
    assert pairs.groupby("split")["input_id"].nunique()["test"] == 6
    with pytest.raises(Exception, match="test_fraction"):
        load_config(None, ["aggregate.test_fraction=sometimes"])


@pytest.mark.parametrize("source", ["usr_topical_chat", "summeval_op"])
def test_bundled_sources_still_hold_30_percent_out(source):
    t = read_source(DataConfig(source=source), RejectLog("ingest"))
    pairs = aggregate(t, AggregateConfig(), 0, RejectLog("a"))
    n_in = pairs["input_id"].nunique()
    assert pairs.loc[pairs["split"] == "test", "input_id"].nunique() == int(np.ceil(0.3 * n_in))
    same = aggregate(t, AggregateConfig(test_fraction=0.3), 0, RejectLog("a"))
    pd.testing.assert_frame_equal(pairs, same)


def test_readme_states_the_defaults_that_change_results():
    text = (Path(__file__).parent.parent / "README.md").read_text()
    for phrase in ["mean of the aspects rescaled", "identical responses", "from the left",
                   "test_fraction", "shape: long", "pdselect init"]:
        assert re.search(re.escape(phrase), text, re.I), phrase
