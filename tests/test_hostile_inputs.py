"""Hostile inputs (issue 8, classes 3-5): nothing read is lost without a count, pairs are well
formed, no byte sequence crashes a reader.

Every file is in tests/data/bad/ (its README has the table). Each case pins the exact outcome:
rows kept + reject reasons and counts (and lines), or an InputError whose text names the file,
the line (where one exists), the field and a fix.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pdselect.aggregate.pairs import build_pairs, from_pairs_input  # noqa: E402
from pdselect.config import AggregateConfig, DataConfig  # noqa: E402
from pdselect.data import read_source  # noqa: E402
from pdselect.data.loading import iter_records  # noqa: E402
from pdselect.errors import InputError  # noqa: E402
from pdselect.data.rejects import RejectLog  # noqa: E402
from pdselect.data.schema import RatedTable  # noqa: E402

HERE = Path(__file__).parent
BAD = HERE / "data" / "bad"
FIX = HERE / "fixtures"
GENERIC = dict(columns={"input": "question", "response": "answer", "input_id": "qid"},
               aspect_columns={"acc": "acc"}, scales={"acc": [1, 5]})
OUT = "rating out of scale (helpfulness: expected 0-4)"
SURR = "invalid Unicode (lone surrogate escape)"
DUP = "duplicate response text for this input"
REUSED = "input_id reused with a different input text"


def read(name: str | Path, source: str = "helpsteer2", **kw):
    rejects = RejectLog("ingest")
    kw = {**GENERIC, **kw} if source == "generic" else kw
    got = read_source(DataConfig(source=source, path=str(BAD / name), **kw), rejects)
    return got, rejects


# (file, source, rows kept, reject counts, lines of the line-level rejects in file order)
ROWS = {
    3: [("folder_mixed", "helpsteer2", 12, {"unsupported file type (not read)": 2}, []),
        ("upper_case.JSONL", "helpsteer2", 4, {}, []),
        ("train.jsonl.gz", "helpsteer2", 4, {}, []),
        ("quoted_multiline.csv", "helpsteer2", 4, {"rating missing (correctness)": 1,
                                                   "rating missing (helpfulness)": 1}, []),
        ("ratings.tsv", "helpsteer2", 4, {}, []),
        ("ragged.csv", "helpsteer2", 2, {"row has 8 fields, the header 7": 1,
                                         "row has 4 fields, the header 7": 1}, [3, 4]),
        ("two_on_a_line.jsonl", "helpsteer2", 2,
         {"malformed JSON: data after the record (two records on one line?)": 1}, [2])],
    4: [("dup_text_same_input.jsonl", "helpsteer2", 3, {DUP: 2}, [2, 3]),
        ("generic_id_conflict.jsonl", "generic", 3, {REUSED: 1, "input_id is not an id": 1},
         [2, 5]),
        ("usr_dup_text.json", "usr_topical_chat", 2, {DUP: 1, REUSED: 1}, [14, 38]),
        ("uf_dup_text.jsonl", "ultrafeedback", 4,
         {DUP: 1, "response is not text (a number)": 1,
          "instruction is not text (an object that is not a chat message)": 1}, [1, 1, 3]),
        ("summeval_dup_text.jsonl", "summeval_op", 3,
         {DUP: 1, "review is not text (a number)": 1}, [1, 2]),
        ("pairs_hostile.jsonl", "pairs", 2,
         {"chosen equals rejected": 1, "chosen is not text (a number)": 1,
          "chosen is not text (an object that is not a chat message)": 1,
          "aspect is not text (a number)": 1, "id is not an id": 1}, [1, 2, 3, 5, 6]),
        ("chat_messages.jsonl", "helpsteer2", 3, {}, []),
        ("non_string_fields.jsonl", "helpsteer2", 2,
         {"prompt is not text (a number)": 1, "response is not text (a number)": 1,
          "response is not text (an object that is not a chat message)": 1,
          "response is not text (a list that is not chat messages)": 1,
          "prompt is not text (a boolean)": 1, "response is not text (a boolean)": 1},
         [2, 3, 4, 5, 6, 7])],
    5: [("lone_surrogate.jsonl", "helpsteer2", 3, {SURR: 2}, [2, 5]),
        ("lone_surrogate_list.json", "helpsteer2", 2, {SURR: 1}, [3]),
        ("utf16_bom.jsonl", "helpsteer2", 4, {}, []),
        ("utf16_be_bom.json", "helpsteer2", 4, {}, []),
        ("latin1.csv", "helpsteer2", 3, {"not UTF-8": 1}, [4]),
        ("huge_numbers.jsonl", "helpsteer2", 7, {OUT: 5}, [3, 4, 5, 6, 7]),
        ("huge_numbers_list.json", "helpsteer2", 3, {OUT: 1}, [3]),
        ("deep_nesting.jsonl", "helpsteer2", 2, {"JSON nested too deeply to parse": 1}, [2]),
        ("nul_bytes.jsonl", "helpsteer2", 3, {"malformed JSON": 1}, [3])],
}

# (file, words of the problem, line or None, field or None)
ERRORS = {
    3: [("duplicate_header.csv", "duplicate column names ['helpfulness']", 1, None),
        ("corrupt.jsonl.gz", "not a valid gz file (EOFError", None, "data.path"),
        ("not_really.jsonl.gz", "not a valid gz file (BadGzipFile", None, "data.path"),
        ("list_trailing_garbage.json", "data after the top-level JSON list: 'garbage", 21,
         None),
        ("two_lists.json", "data after the top-level JSON list: '[{", 2, None),
        ("concatenated_objects.json", "data after the top-level JSON value (at line 1", 1,
         None),
        ("list_unclosed.json", "JSON list is not closed (file truncated?)", 37, None),
        ("list_missing_comma.json", "expected ',' or ']' after the record", 4, None),
        ("empty.jsonl", "holds no records", None, "data.path"),
        ("data.csv", "holds no records", None, "data.path"),
        ("unsupported_type.txt", "unsupported file type '.txt'", None, "data.path")],
    5: [("utf16_nobom.jsonl", "looks like UTF-16LE text without a byte-order mark", 1,
         "data.path"),
        ("utf16_be_nobom.csv", "looks like UTF-16BE text without a byte-order mark", 1,
         "data.path"),
        ("utf16_bad_bom.jsonl", "UTF-16LE byte-order mark but is not valid UTF-16LE", 1,
         "data.path"),
        ("deep_nesting_list.json", "JSON nested too deeply to parse", 3, None),
        ("deep_nesting_top.json", "JSON nested too deeply to parse", 1, None),
        ("truncated.parquet", "not a readable Parquet file", None, "data.path"),
        ("unreadable_dir.jsonl", "folder holds no data files (found: .gitkeep)", None,
         "data.path")],
}


def _check_rows(name, source, n_rows, counts, lines):
    got, rej = read(name, source)
    assert len(got.df) == n_rows
    assert rej.counts() == counts
    assert [i["line"] for i in rej.items if "line" in i] == lines
    for item in rej.items:  # every reject names its file, inside the bad folder
        assert Path(item["file"]).is_relative_to(BAD / name) or item["file"] == str(BAD / name)
    json.dumps(rej.items, ensure_ascii=False).encode("utf-8")  # rejects.jsonl can hold them
    return got, rej


def _check_error(name, words, line, field, source="helpsteer2"):
    with pytest.raises(InputError) as e:
        read(name, source)
    msg = str(e.value)
    assert e.value.path.endswith(name) and msg.startswith(str(BAD / name))
    assert words in msg and "Fix: " in msg and e.value.fix
    assert e.value.line == line and (f"{name}:{line}" in msg if line else True)
    assert e.value.field == field and (f"field '{field}'" in msg if field else True)


# ============================================================================ class 3
@pytest.mark.parametrize("case", ROWS[3], ids=[c[0] for c in ROWS[3]])
def test_class3_every_file_is_read_or_counted(case):
    _check_rows(*case)


@pytest.mark.parametrize("case", ERRORS[3], ids=[c[0] for c in ERRORS[3]])
def test_class3_file_level_errors(case):
    _check_error(*case)


def test_class3_folder_lists_what_it_does_not_read(caplog):
    got, rej = read("folder_mixed")
    skipped = sorted(Path(i["file"]).name for i in rej.items)
    assert skipped == ["g.zip", "notes.txt"]
    assert "2 file(s) not read" in caplog.text and "g.zip, notes.txt" in caplog.text
    # every readable format contributed its two rows (Q6 is in sub/f.json.bz2)
    assert sorted(got.df["input"].unique()) == [f"Q{i}" for i in range(1, 7)]


def test_class3_csv_values_and_real_line_numbers():
    got = list(iter_records(BAD / "quoted_multiline.csv", DataConfig(), RejectLog("x")))
    assert [line for _, line, _ in got] == [2, 4, 6, 7]  # a quoted newline spans 2 lines
    assert got[0][2]["response"] == "line one\nline two, with comma"
    assert got[1][2]["response"] == 'He said "hi"'
    t, _ = read("quoted_multiline.csv")
    h = t.df["helpfulness"].tolist()
    assert (h[0], h[2], h[3]) == (3.0, 4.0, 0.0) and math.isnan(h[1])  # empty cell: missing
    assert math.isnan(t.df["correctness"][3])  # "N/A"


@pytest.mark.parametrize("path,max_rows,kept,not_read", [
    (FIX / "helpsteer2_sample.jsonl", 5, 5, 3), (BAD / "utf16_be_bom.json", 1, 1, 3),
    (BAD / "folder_mixed", 3, 3, 9), (BAD / "ratings.tsv", 4, 4, 0)])
def test_class3_records_beyond_max_rows_are_counted(path, max_rows, kept, not_read):
    rej = RejectLog("ingest")
    t = read_source(DataConfig(source="helpsteer2", path=str(path), max_rows=max_rows), rej)
    assert len(t.df) == kept
    key = f"not read: beyond data.max_rows={max_rows}"
    assert rej.counts().get(key, 0) == not_read


def test_class3_max_rows_counts_parquet_rows(tmp_path):
    pd.read_json(FIX / "helpsteer2_sample.jsonl", lines=True).to_parquet(tmp_path / "x.PARQUET")
    rej = RejectLog("ingest")
    t = read_source(DataConfig(source="helpsteer2", path=str(tmp_path), max_rows=2), rej)
    assert len(t.df) == 2 and rej.counts() == {"not read: beyond data.max_rows=2": 6}


# ============================================================================ class 4
@pytest.mark.parametrize("case", ROWS[4], ids=[c[0] for c in ROWS[4]])
def test_class4_pairs_are_well_formed(case):
    got, _ = _check_rows(*case)
    df = got.df
    if "chosen" in df:  # pairs source
        assert (df["chosen"].str.strip() != df["rejected"].str.strip()).all()
    else:
        texts = df.assign(t=df["response"].str.strip())
        assert not texts.duplicated(["input_id", "t"]).any()
        assert (df.groupby("input_id")["input"].nunique() == 1).all()
    for col in ("input", "response", "chosen", "rejected"):  # never a repr'd list or dict
        if col in df:
            assert not df[col].str.match(r"^\s*[\[{]").any(), col


def test_class4_chat_messages_render_as_turns():
    t, _ = read("chat_messages.jsonl")
    assert t.df["input"][0] == "user: Hi\nassistant: Hello\nuser: What is 2+2?"
    assert t.df["response"].tolist() == ["4", "Five.", "reply"]
    assert t.df["input"][2] == "turn one\nturn two"
    assert t.df["input_id"][0] == t.df["input_id"][1] != t.df["input_id"][2]
    p, _ = read("pairs_hostile.jsonl", "pairs")
    d = p.df.set_index("pair_id").loc["d"]
    assert d["input"] == "user: Hi\nassistant: Hello\nuser: Help?"
    assert (d["chosen"], d["rejected"]) == ("Sure.", "No.")


def test_class4_non_text_rejects_say_what_they_got():
    _, rej = read("non_string_fields.jsonl")
    by_line = {i["line"]: i for i in rej.items}
    assert by_line[2]["field"] == "prompt" and by_line[2]["value"] == 42
    assert by_line[4]["value"] == {"text": "x"}
    with pytest.raises(InputError) as e:
        read("non_string_fields.jsonl", strict=True)
    assert (e.value.line, e.value.field) == (2, "prompt") and "42" in str(e.value)
    assert "chat messages" in str(e.value) and "Fix:" in str(e.value)


def _rated(inputs, responses):
    n = len(inputs)
    df = pd.DataFrame({"input_id": ["A"] * n, "input": inputs,
                       "response_id": [f"r{i}" for i in range(n)], "response": responses,
                       "h": [float(i + 1) for i in range(n)]})
    return RatedTable(df, ["h"], {"h": (1, 9)}, has_overall=False, source="toy")


def test_class4_aggregate_never_pairs_identical_texts_or_merges_inputs():
    rej = RejectLog("aggregate")
    p = build_pairs(_rated(["q", "q", "q", "other q", "q"], ["x", "y", " x ", "z", "w"]),
                    AggregateConfig(), 0, rej)
    assert rej.counts() == {DUP: 1, REUSED: 1}
    assert {i["record"]["response_id"] for i in rej.items} == {"r2", "r3"}
    assert len(p) == 3 and (p["chosen"] != p["rejected"]).all()  # x, y, w: 3 pairs
    assert set(p["input"]) == {"q"}


def test_class4_paired_input_whitespace_twins_are_rejected_in_aggregate():
    df = pd.DataFrame({"pair_id": ["a", "b"], "input_id": "i", "input": "q",
                       "chosen": ["x", "y"], "rejected": ["x\n", "z"], "aspect": "h"})
    rej = RejectLog("aggregate")
    out = from_pairs_input(df, AggregateConfig(min_pairs_per_aspect=1, test_fraction=0), 0, rej)
    assert out["pair_id"].tolist() == ["b"]
    assert rej.counts() == {"chosen and rejected are identical": 1}


# ============================================================================ class 5
@pytest.mark.parametrize("case", ROWS[5], ids=[c[0] for c in ROWS[5]])
def test_class5_hostile_bytes_are_counted_rejects(case):
    got, rej = _check_rows(*case)
    got.df.to_parquet(Path(os.devnull))  # what ingest writes next must not fail either


@pytest.mark.parametrize("case", ERRORS[5], ids=[c[0] for c in ERRORS[5]])
def test_class5_file_level_errors(case):
    _check_error(*case)


def test_class5_huge_numbers_are_out_of_scale_with_a_short_value():
    _, rej = read("huge_numbers.jsonl")
    values = [i["value"] for i in rej.items if i["reason"] == OUT]
    assert values[0] == "1e999" and values[1] == "<401-digit integer>"
    assert values[2].endswith("(5000 characters)") and values[3] == "-1e999"
    assert values[4] == "1e999"  # the string "1e999" too
    assert all(len(str(v)) < 60 for v in values)


@pytest.mark.parametrize("name,line,problem", [
    ("lone_surrogate.jsonl", 2, SURR), ("huge_numbers.jsonl", 3, OUT),
    ("deep_nesting.jsonl", 2, "nested too deeply"), ("latin1.csv", 4, "not UTF-8")])
def test_class5_strict_mode_names_the_line(name, line, problem):
    with pytest.raises(InputError) as e:
        read(name, strict=True)
    assert e.value.line == line and problem in str(e.value) and "strict" in str(e.value)


@pytest.mark.parametrize("exc", [PermissionError(errno.EACCES, "Permission denied"),
                                 OSError(errno.EIO, "Input/output error"),
                                 IsADirectoryError(errno.EISDIR, "Is a directory")])
def test_class5_unreadable_file_is_a_clear_error(monkeypatch, exc):
    # tests run as root, so chmod 000 would not stop the read: fail it where it happens
    def boom(self):
        raise exc
    monkeypatch.setattr(Path, "read_bytes", boom)
    with pytest.raises(InputError) as e:
        read("upper_case.JSONL")
    msg = str(e.value)
    assert msg.startswith(str(BAD / "upper_case.JSONL")) and type(exc).__name__ in msg
    assert exc.strerror in msg and e.value.field == "data.path" and "Fix: check" in msg


def test_class5_rejects_file_holds_every_hostile_record(tmp_path):
    rej = RejectLog("ingest")
    for name in ("lone_surrogate.jsonl", "huge_numbers.jsonl", "deep_nesting.jsonl",
                 "latin1.csv", "non_string_fields.jsonl"):
        read_source(DataConfig(source="helpsteer2", path=str(BAD / name)), rej)
    deep = [0]
    rej.add("deep", record=[deep] + [[[[[[[[x] for x in range(1)]]]]]]])
    for _ in range(3000):
        deep = [deep]
    rej.add("deeper", record=deep)
    rej.write(tmp_path / "rejects.jsonl")
    back = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text("utf-8").splitlines()]
    assert len(back) == len(rej.items) and back[-1]["record"] == "<unwritable list>"
    surr = [b for b in back if b["reason"] == SURR]
    assert len(surr) == 2 and "\\ud800" in surr[0]["record"]


# ============================================================================ CLI validate
def _validate(tmp_path, capsys, path, *extra):
    from pdselect.cli import main

    rc = main(["-q", "validate", "data.source=helpsteer2", f"data.path={path}",
               f"run_dir={tmp_path / 'run'}", "aggregate.min_pairs_per_aspect=1", *extra])
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("name,words", [
    ("utf16_nobom.jsonl", "looks like UTF-16LE"), ("deep_nesting_top.json", "nested too deep"),
    ("two_lists.json", "data after the top-level JSON list"),
    ("corrupt.jsonl.gz", "not a valid gz file")])
def test_validate_fails_cleanly_on_hostile_files(tmp_path, capsys, name, words):
    rc, out = _validate(tmp_path, capsys, BAD / name)
    assert rc == 1 and "validation FAILED" in out and words in out and "Fix:" in out


def test_validate_reports_hostile_rejects_and_unread_files(tmp_path, capsys):
    rc, out = _validate(tmp_path, capsys, BAD / "lone_surrogate.jsonl")
    assert f"would reject 2: {SURR}" in out and "Traceback" not in out
    rc, out = _validate(tmp_path, capsys, BAD / "folder_mixed", "--full")
    assert "would reject 2: unsupported file type (not read)" in out and "12 responses" in out


def test_ingest_stage_writes_artifacts_from_hostile_files(tmp_path):
    from pdselect.cli import main

    data = tmp_path / "data"
    data.mkdir()
    names = ["lone_surrogate.jsonl", "huge_numbers.jsonl", "deep_nesting.jsonl", "latin1.csv",
             "non_string_fields.jsonl", "utf16_bom.jsonl", "chat_messages.jsonl"]
    for name in names:
        (data / name).write_bytes((BAD / name).read_bytes())
    (data / "README.md").write_text("about the data\n")
    assert main(["-q", "ingest", "data.source=helpsteer2", f"data.path={data}",
                 f"run_dir={tmp_path / 'run'}"]) == 0
    out = tmp_path / "run" / "ingest"
    rated = pd.read_parquet(out / "rated.parquet")
    back = [json.loads(x) for x in (out / "rejects.jsonl").read_text("utf-8").splitlines()]
    reasons = {b["reason"] for b in back}
    assert {SURR, OUT, "JSON nested too deeply to parse", "not UTF-8",
            "unsupported file type (not read)", "response is not text (a number)"} <= reasons
    assert not rated["response"].str.contains("\\[\\{'role'").any() and len(rated) >= 10
