"""Ingest layer: one test per schema on real/fixture data, one per bad-input case.

Bad inputs live in tests/data/bad/ (see its README); each test pins the reject reason and count,
or the InputError's file/line/field, so a reader that silently drops or keeps rows fails.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pdselect.config import DataConfig  # noqa: E402
from pdselect.data import READERS, PairsInput, read_source  # noqa: E402
from pdselect.errors import InputError  # noqa: E402
from pdselect.data.rejects import RejectLog  # noqa: E402
from pdselect.data.schema import RATED_BASE, RatedTable  # noqa: E402

HERE = Path(__file__).parent
FIX = HERE / "fixtures"
BAD = HERE / "data" / "bad"


def read(source: str, path: str | Path = "", **kw):
    rejects = RejectLog("ingest")
    return read_source(DataConfig(source=source, path=str(path), **kw), rejects), rejects


def hs(name: str, **kw):
    return read("helpsteer2", BAD / name, **kw)


# ============================================================================ schemas
def test_registry_covers_every_configured_source():
    import typing
    allowed = typing.get_args(typing.get_type_hints(DataConfig)["source"])
    assert set(READERS) == set(allowed)


def test_usr_topical_chat_bundled():
    t, rej = read("usr_topical_chat")
    assert isinstance(t, RatedTable) and t.source == "usr_topical_chat"
    # 360 rows; in one context two models gave the same text: the second copy is rejected
    assert len(t.df) == 359 and t.df["input_id"].nunique() == 60
    assert t.df.groupby("input_id").size().value_counts().to_dict() == {6: 59, 5: 1}
    assert t.df["response_id"].is_unique
    assert rej.counts() == {"duplicate response text for this input": 1}
    dup = rej.items[0]
    assert dup["value"] == "1c698410f290:Nucleus Decoding (p = 0.3)" and dup["line"] > 1
    assert t.aspects == ["understandable", "natural", "maintains_context", "engaging",
                         "uses_knowledge"]
    assert t.has_overall and t.scales["natural"] == (1.0, 3.0) and t.scales["overall"] == (1, 5)
    row = t.df.iloc[0]
    assert row["response_id"].endswith(":Original Ground Truth")
    assert row["response"].startswith("i recently met a girl who lives in that area")
    assert not row["response"].endswith("\n")
    assert row["input"].startswith("Fact: from left , emma baker")
    assert row["input"].endswith("can you imagine that much soup ?")
    assert math.isclose(row["overall"], 4.6666666667) and row["natural"] == 3.0
    assert math.isclose(row["uses_knowledge"], 0.6666666667)
    assert list(t.df.columns) == RATED_BASE + t.aspects + ["overall"]


def test_usr_persona_chat_bundled():
    t, rej = read("usr_persona_chat")
    assert len(t.df) == 300 and t.df["input_id"].nunique() == 60 and rej.total == 0
    row = t.df.iloc[0]
    assert row["response"] == "ha ha i'm so shy"
    assert row["input"].startswith("your persona: i also have a dog walking business.\n")
    assert row["input"].endswith("\nreally would you share or are you shy")
    assert math.isclose(row["overall"], 3.6666666667) and math.isclose(row["engaging"],
                                                                       1.3333333333)


def test_summeval_op_bundled():
    t, rej = read("summeval_op")
    assert len(t.df) == 416 and t.df["input_id"].nunique() == 32 and rej.total == 0
    assert not t.has_overall and "overall" not in t.df.columns
    assert t.aspects == ["fluency", "coherence", "relevance", "faithfulness", "aspect_coverage",
                         "sentiment_consistency", "specificity"]
    gpt4 = t.df[t.df["response_id"].str.endswith(":gpt-4")].iloc[0]
    assert gpt4["relevance"] == 4.33 and gpt4["fluency"] == 5.0
    assert gpt4["response"].startswith("The consensus among the reviewers")
    assert gpt4["input"].startswith("Review 1: i really like these boots.")
    assert gpt4["input"].count("Review ") == 8


def test_ultrafeedback_fixture():
    t, rej = read("ultrafeedback", FIX / "ultrafeedback_sample.jsonl")
    assert t.aspects == ["helpfulness", "honesty", "instruction_following", "truthfulness"]
    assert t.scales["overall"] == (1.0, 10.0) and t.has_overall
    # 6 records x 4 completions, one completion has an empty response
    assert len(t.df) == 23 and t.df["input_id"].nunique() == 6
    assert rej.counts() == {"empty response": 1, "rating missing (truthfulness)": 2,
                            "rating missing (helpfulness)": 1, "rating missing (honesty)": 1}
    empty = next(i for i in rej.items if i["reason"] == "empty response")
    assert empty["line"] == 4 and empty["field"] == "completions[2].response"
    gpt4 = t.df.iloc[0]
    assert gpt4["input"].startswith("Explain the difference between a list and a tuple")
    assert gpt4["response_id"].endswith(":gpt-4") and gpt4["overall"] == 8.5
    assert gpt4[t.aspects].tolist() == [5.0, 5.0, 5.0, 5.0]
    pythia = t.df[t.df["response_id"].str.endswith(":pythia-12b")].iloc[0]
    assert pythia["helpfulness"] == 2.0 and math.isnan(pythia["honesty"])


def test_ultrafeedback_github_list_shape_and_aspect_subset(tmp_path):
    rec = json.loads((FIX / "ultrafeedback_sample.jsonl").read_text().splitlines()[0])
    for c in rec["completions"]:  # the GitHub release wraps each annotation in a list
        c["annotations"] = {k: [v] for k, v in c["annotations"].items()}
    p = tmp_path / "uf.json"
    p.write_text(json.dumps([rec]))
    t, _ = read("ultrafeedback", p, aspects=["honesty"])
    assert t.aspects == ["honesty"] and t.df["honesty"].tolist() == [5.0, 4.0, 3.0, 4.0]


def test_helpsteer2_fixture_jsonl_and_parquet(tmp_path):
    t, rej = read("helpsteer2", FIX / "helpsteer2_sample.jsonl")
    assert len(t.df) == 8 and t.df["input_id"].nunique() == 4 and rej.total == 0
    assert not t.has_overall and t.scales["verbosity"] == (0.0, 4.0)
    assert t.df.iloc[1][t.aspects].tolist() == [1.0, 1.0, 3.0, 0.0, 0.0]
    pq = tmp_path / "hs.parquet"
    pd.read_json(FIX / "helpsteer2_sample.jsonl", lines=True).to_parquet(pq)
    t2, _ = read("helpsteer2", pq)
    pd.testing.assert_frame_equal(t.df, t2.df)


def test_folder_and_max_rows(tmp_path):
    lines = (FIX / "helpsteer2_sample.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_text("".join(lines[:4]))
    (tmp_path / "b.jsonl").write_text("".join(lines[4:]))
    t, _ = read("helpsteer2", tmp_path)
    assert len(t.df) == 8
    t, _ = read("helpsteer2", tmp_path, max_rows=5)
    assert len(t.df) == 5
    t, _ = read("usr_persona_chat", max_rows=10)
    assert len(t.df) == 10


def test_generic_column_map(tmp_path):
    rows = [{"qid": "q1", "question": "Q?", "answer": "A1", "acc": 4, "sty": 2, "score": 7},
            {"qid": "q1", "question": "Q?", "answer": "A2", "acc": 1, "sty": None, "score": 3},
            {"qid": "q2", "question": "R?", "answer": "B1", "acc": 9, "sty": 3, "score": 5}]
    p = tmp_path / "g.parquet"
    pd.DataFrame(rows).to_parquet(p)
    t, rej = read("generic", p, columns={"input": "question", "response": "answer",
                                         "input_id": "qid", "overall": "score"},
                  aspect_columns={"accuracy": "acc", "style": "sty"}, scales={"accuracy": [1, 5]})
    assert t.aspects == ["accuracy", "style"] and t.has_overall
    assert t.df["input_id"].tolist() == ["q1", "q1", "q2"]
    assert math.isnan(t.df["accuracy"][2])  # 9 is out of the declared 1-5 scale
    assert rej.counts() == {"rating missing (style)": 1,
                            "rating out of scale (accuracy: expected 1-5)": 1}
    assert t.scales["style"] == (2.0, 3.0)  # no declared scale: observed range


def test_generic_needs_a_response_column(tmp_path):
    # a column named `response` needs no mapping (tests/test_own_data.py); a mapped column
    # the file lacks is an error naming the key and the file's closest column
    with pytest.raises(InputError, match="data.columns.response.*closest column: 'response'"):
        read("generic", FIX / "helpsteer2_sample.jsonl", columns={"input": "prompt",
                                                                 "response": "respnse"},
             aspect_columns={"h": "helpfulness"})


def test_pairs_fixture():
    p, rej = read("pairs", FIX / "pairs_sample.jsonl")
    assert isinstance(p, PairsInput) and rej.total == 0
    assert list(p.df.columns) == ["pair_id", "input_id", "input", "chosen", "rejected", "aspect"]
    assert p.df["pair_id"].tolist()[:3] == ["p1", "p2", "p3"] and len(p.df) == 4
    assert p.aspects == ["correctness", "helpfulness", "verbosity"]
    assert p.df["input_id"][0] == p.df["input_id"][1] != p.df["input_id"][2]
    sub, rej = read("pairs", FIX / "pairs_sample.jsonl", aspects=["correctness"])
    assert len(sub.df) == 2 and rej.counts() == {"aspect not selected": 2}


def test_pairs_bad_rows():
    p, rej = read("pairs", BAD / "pairs_bad.jsonl")
    assert p.df["pair_id"].tolist() == ["c"]
    assert rej.counts() == {"chosen equals rejected": 1, "duplicate pair_id": 1,
                            "empty response": 1, "missing field 'aspect'": 1}


# ============================================================================ bad files
def test_truncated_last_line_is_rejected():
    t, rej = hs("truncated.jsonl")
    assert len(t.df) == 3
    assert rej.counts() == {"malformed JSON (truncated last line?)": 1}
    assert rej.items[0]["line"] == 4 and rej.items[0]["file"].endswith("truncated.jsonl")


def test_malformed_lines_are_rejected_with_line_numbers():
    t, rej = hs("malformed_line.jsonl")
    assert len(t.df) == 3
    assert rej.counts() == {"malformed JSON": 2}
    assert [i["line"] for i in rej.items] == [2, 4]


def test_malformed_line_strict_raises_with_line():
    with pytest.raises(InputError) as e:
        hs("malformed_line.jsonl", strict=True)
    assert e.value.line == 2 and "malformed_line.jsonl:2" in str(e.value)
    assert "strict" in str(e.value)


@pytest.mark.parametrize("name,what", [("top_object.json", "a JSON object"),
                                       ("top_scalar.json", "a JSON int"),
                                       ("records_are_lists.jsonl", "records are list"),
                                       ("list_of_strings.json", "list elements are str")])
def test_wrong_top_level_type(name, what):
    with pytest.raises(InputError) as e:
        hs(name)
    assert what in str(e.value) and e.value.path.endswith(name) and e.value.line == 1
    assert "Fix:" in str(e.value)


def test_malformed_json_list_names_the_line():
    with pytest.raises(InputError) as e:
        hs("malformed_list.json")
    assert e.value.line == 3 and "malformed JSON" in str(e.value)


def test_unsupported_suffix_and_missing_file():
    with pytest.raises(InputError, match="unsupported file type '.txt'"):
        hs("unsupported_type.txt")
    # CSV is read since issue 8: a header without rows is "no records", not a bad suffix
    with pytest.raises(InputError, match="data.csv field .data.path.: holds no records"):
        hs("data.csv")
    with pytest.raises(InputError, match="file not found"):
        hs("nope.jsonl")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("offline mode is enabled")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError) as e:
        read("helpsteer2", "nvidia/HelpSteer2")
    msg = str(e.value)
    assert "hub is unreachable" in msg and "local file" in msg and e.value.field == "data.path"


def test_renamed_fields_on_every_row_is_a_schema_error():
    with pytest.raises(InputError) as e:
        hs("renamed_fields.jsonl")
    msg = str(e.value)
    assert e.value.field == "prompt" and "question" in msg and "helpsteer2" in msg


def test_wrong_reader_suggests_the_right_one():
    with pytest.raises(InputError, match="source 'usr_topical_chat'"):
        read("helpsteer2", Path(__file__).parents[1] / "src/pdselect/bundled/usr_dialog_eval"
             / "topical_chat.json")


def test_missing_field_on_some_rows_rejects_those_rows():
    t, rej = hs("missing_field_some.jsonl")
    assert len(t.df) == 2
    assert rej.counts() == {"missing field 'prompt'": 1, "missing field 'response'": 1}
    assert {i["field"]: i["line"] for i in rej.items} == {"response": 2, "prompt": 3}


def test_bad_ratings():
    t, rej = hs("ratings_bad.jsonl")
    # every row keeps its 4 other aspects, so every response survives
    assert len(t.df) == 9
    h = t.df["helpfulness"].tolist()
    assert h[0] == 3.0 and h[8] == 2.0  # numeric strings parse
    assert all(math.isnan(x) for x in h[1:8])
    assert rej.counts() == {"rating missing (helpfulness)": 4,  # N/A, NaN, inf, null
                            "rating out of scale (helpfulness: expected 0-4)": 2,
                            "rating not a number (helpfulness)": 1}
    bad = {i["reason"]: i for i in rej.items if "record" in i}
    assert bad["rating not a number (helpfulness)"]["value"] == "good"
    assert bad["rating not a number (helpfulness)"]["line"] == 5


def test_bad_rating_strict_names_line_field_and_scale():
    with pytest.raises(InputError) as e:
        hs("ratings_bad.jsonl", strict=True)
    assert e.value.line == 5 and e.value.field == "helpfulness"
    assert "'good'" in str(e.value) and "[0, 4]" in str(e.value)


def test_empty_and_whitespace_responses():
    t, rej = hs("empty_responses.jsonl")
    assert t.df["response"].tolist() == ["A real answer."]
    assert rej.counts() == {"empty response": 3}
    assert [i["line"] for i in rej.items] == [1, 2, 3]


def test_all_aspects_missing_rejects_the_response():
    t, rej = hs("all_unrated.jsonl")
    assert len(t.df) == 1
    assert rej.counts()["no aspect rated"] == 2


def test_non_utf8_line_is_rejected():
    t, rej = hs("non_utf8.jsonl")
    assert len(t.df) == 2 and rej.counts() == {"not UTF-8": 1} and rej.items[0]["line"] == 2


def test_non_utf8_in_json_list_is_rejected_by_record():
    t, rej = hs("non_utf8_list.json")
    assert len(t.df) == 2 and rej.counts() == {"not UTF-8": 1} and rej.items[0]["line"] == 3


def test_non_utf8_strict_raises():
    with pytest.raises(InputError, match="non_utf8.jsonl:2: not UTF-8"):
        hs("non_utf8.jsonl", strict=True)


def test_duplicate_responses_keep_the_first():
    t, rej = hs("duplicates.jsonl")
    assert len(t.df) == 3 and rej.counts() == {"duplicate response_id": 1}
    assert rej.items[0]["line"] == 3


def test_unknown_aspect_is_an_error_with_hint():
    with pytest.raises(InputError) as e:
        read("usr_topical_chat", aspects=["engagin"])
    msg = str(e.value)
    assert e.value.field == "data.aspects" and "did you mean 'engaging'" in msg
    assert "uses_knowledge" in msg


def test_aspect_subset_keeps_only_those_columns():
    t, _ = read("summeval_op", aspects=["fluency", "specificity"])
    assert t.aspects == ["fluency", "specificity"] and "coherence" not in t.df.columns


def test_usr_out_of_scale_and_missing_model():
    t, rej = read("usr_topical_chat", BAD / "usr_bad.json")
    assert len(t.df) == 2  # the out-of-scale row keeps its other aspects
    assert math.isnan(t.df["natural"][0])
    assert rej.counts() == {"missing field 'model'": 1,
                            "rating out of scale (natural: expected 1-3)": 1}
    lines = {i["reason"]: i["line"] for i in rej.items}
    assert lines["missing field 'model'"] == 14  # where the 2nd element starts


def test_ultrafeedback_bad_completions():
    t, rej = read("ultrafeedback", BAD / "ultrafeedback_bad.jsonl")
    assert t.df["response"].tolist() == ["Hello!", "Hi there.", "Greetings."]
    assert rej.counts() == {"missing field 'completions[2].annotations'": 1,
                            "rating not a number (helpfulness)": 1,
                            "rating out of scale (helpfulness: expected 1-5)": 1,
                            "rating out of scale (overall: expected 1-10)": 1}
    assert math.isnan(t.df["overall"][1])


def test_no_usable_rows_is_an_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"prompt": "Q", "response": "", "helpfulness": 1, "correctness": 1, '
                 '"coherence": 1, "complexity": 1, "verbosity": 1}\n')
    with pytest.raises(InputError, match="no usable responses"):
        read("helpsteer2", p)


def test_hub_id_is_read_through_datasets(monkeypatch):
    import datasets

    rows = [json.loads(x) for x in (FIX / "helpsteer2_sample.jsonl").read_text().splitlines()]
    seen = {}

    def fake(path, split):
        seen.update(path=path, split=split)
        return datasets.Dataset.from_list(rows)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    t, _ = read("helpsteer2", "nvidia/HelpSteer2", hf_split="validation", max_rows=3)
    assert seen == {"path": "nvidia/HelpSteer2", "split": "validation"} and len(t.df) == 3


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs HF_HUB_OFFLINE=1")
def test_hub_id_really_offline():
    with pytest.raises(InputError, match="hub is unreachable"):
        read("helpsteer2", "nvidia/HelpSteer2")


def test_missing_field_strict_names_the_row():
    with pytest.raises(InputError) as e:
        hs("missing_field_some.jsonl", strict=True)
    assert (e.value.line, e.value.field) == (2, "response") and "strict" in str(e.value)


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + (FIX / "helpsteer2_sample.jsonl").read_bytes())
    t, rej = read("helpsteer2", p)
    assert len(t.df) == 8 and rej.total == 0
