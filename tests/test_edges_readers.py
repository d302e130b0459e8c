"""Issue 17, class 3: readers. The WMT general-MT 2023 MQM layout (a header with an 11th,
trailing ``# Documentation: <url>`` field over 10-field rows) read every row as rejected;
per-rater long tables kept the first rater's rating; a semicolon CSV, ``~`` and ``file://`` in
data.path and a FIFO got "file not found" or a wrong guess."""

import json
import os
import threading
from pathlib import Path

import pytest

from pdselect.config import DataConfig, load_config
from pdselect.data import read_source
from pdselect.data.rejects import RejectLog
from pdselect.errors import InputError

FIX = Path(__file__).parent / "fixtures" / "mqm"
GENERIC = dict(columns={"input": "q", "response": "answer"},
               aspect_columns={"help": "help", "short": "short"},
               scales={"help": [1, 5], "short": [1, 5]})


def _read(path, source="generic", **kw):
    rejects = RejectLog("ingest")
    kw = {**GENERIC, **kw} if source == "generic" else kw
    return read_source(DataConfig(source=source, path=str(path), **kw), rejects), rejects


# ------------------------------------------------------------------------- MQM 2023 layout
def test_general_mt_2023_header_with_a_documentation_field(tmp_path):
    """The 2023 files: the header's 11th field is a comment, rows have the 10 real fields."""
    lines = (FIX / "general_sample.tsv").read_text(encoding="utf-8").split("\n")
    lines[0] += "\t# Documentation: https://github.com/google/wmt-mqm-human-evaluation"
    f = tmp_path / "mqm_generalMT2023_ende.tsv"
    f.write_text("\n".join(lines), encoding="utf-8")
    got, rej = _read(f, "mqm")
    ref, ref_rej = _read(FIX / "general_sample.tsv", "mqm")
    assert got.df[got.aspects + ["overall"]].equals(ref.df[ref.aspects + ["overall"]])
    assert rej.counts() == ref_rej.counts()  # no row rejected for its column count


def test_header_only_mqm_file_names_the_file_and_the_fix(tmp_path):
    f = tmp_path / "header_only.tsv"
    f.write_text((FIX / "general_sample.tsv").read_text().split("\n")[0] + "\n")
    with pytest.raises(InputError) as e:
        _read(f, "mqm")
    msg = str(e.value)
    assert str(f) in msg and "holds no data rows (a header only" in msg
    assert "see the rejects file" not in msg and "Fix: check that data.path points" in msg


# ------------------------------------------------------------------------- per-rater tables
def test_per_rater_long_table_averages_the_raters(tmp_path):
    rows = []
    for i in range(3):
        for j, (h1, h2, h3) in enumerate([(1, 2, 4), (5, 5, 4)]):
            for rater, h in (("r1", h1), ("r2", h2), ("r3", h3)):
                rows.append({"q": f"q{i}", "answer": f"a{j}", "rater": rater,
                             "aspect": "help", "rating": h})
                rows.append({"q": f"q{i}", "answer": f"a{j}", "rater": rater,
                             "aspect": "short", "rating": 3})
    f = tmp_path / "raters.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t, rej = _read(f, columns={"input": "q", "response": "answer"}, aspect_columns={})
    assert sorted(t.df["help"].round(4).unique()) == [round(7 / 3, 4), round(14 / 3, 4)]
    assert len(t.df) == 6
    assert rej.counts() == {"response rated on several rows per aspect: ratings averaged "
                            "(kept, not dropped)": 6}


def test_per_rater_wide_table_averages_like_mqm(tmp_path):
    """One row per response x rater (wide): the same text under one input is one response;
    its raters' ratings are averaged (it was: the first rater's kept, the others rejected)."""
    rows = [{"q": f"q{i}", "answer": f"a{j}", "rater": r, "help": h, "short": 3}
            for i in range(2) for j in range(2) for r, h in (("r1", 1 + j), ("r2", 2 + j),
                                                              ("r3", 4 + j))]
    f = tmp_path / "wide_raters.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t, rej = _read(f)
    assert len(t.df) == 4
    assert sorted(t.df["help"]) == [7 / 3, 7 / 3, 10 / 3, 10 / 3]
    assert rej.counts() == {"response rated on several rows per aspect: ratings averaged "
                            "(kept, not dropped)": 4}


def test_a_bad_rating_among_raters_is_rejected_on_its_own_line(tmp_path):
    rows = [{"q": "q", "answer": a, "aspect": "help", "rating": r}
            for a, r in (("x", 2), ("x", 9), ("x", 4), ("y", 1))]
    rows += [{"q": "q", "answer": a, "aspect": "short", "rating": 3} for a in ("x", "y")]
    f = tmp_path / "bad_rater.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t, rej = _read(f, columns={"input": "q", "response": "answer"}, aspect_columns={})
    assert t.df.set_index("response")["help"].to_dict() == {"x": 3.0, "y": 1.0}
    bad = [r for r in rej.items if r["reason"].startswith("rating out of scale")]
    assert len(bad) == 1 and bad[0]["line"] == 2  # the 9, not the mean, is rejected


# ------------------------------------------------------------------------- paths and files
def _wide(path, sep=","):
    rows = [f"q{sep}answer{sep}help{sep}short"]
    rows += [f"q{i}{sep}a{j}{sep}{1 + (i + j) % 5}{sep}{1 + j}" for i in range(3) for j in range(3)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_semicolon_csv_is_read(tmp_path):
    t, rej = _read(_wide(tmp_path / "excel.csv", ";"))
    ref, _ = _read(_wide(tmp_path / "plain.csv"))
    assert len(t.df) == 9 and rej.counts() == {}
    assert t.df[["help", "short"]].equals(ref.df[["help", "short"]])


@pytest.mark.parametrize("form", ["tilde", "file_url", "file_url_localhost"])
def test_tilde_and_file_url_in_data_path(tmp_path, monkeypatch, form):
    monkeypatch.setenv("HOME", str(tmp_path))
    f = _wide(tmp_path / "my data.csv")
    given = {"tilde": "~/my data.csv", "file_url": f"file://{tmp_path}/my%20data.csv",
             "file_url_localhost": f"file://localhost{tmp_path}/my data.csv"}[form]
    cfg = load_config(None, ["data.source=generic", f"data.path={given}",
                             "data.columns={input: q, response: answer}",
                             "data.aspects=[help, short]"])
    assert cfg.data.path == str(f)  # resolved once, recorded in config.yaml as a plain path
    t = read_source(cfg.data, RejectLog("ingest"))
    assert len(t.df) == 9
    t, _ = _read(given)  # a DataConfig built in code (no load_config) resolves it too
    assert len(t.df) == 9


def test_file_url_of_another_host_is_a_config_error():
    with pytest.raises(Exception, match="file URL on another host"):
        load_config(None, ["data.source=generic", "data.path=file://server/share/d.csv"])


@pytest.mark.parametrize("source", ["generic", "mqm"])
def test_fifo_is_a_clear_error_not_file_not_found_and_never_blocks(tmp_path, source):
    fifo = tmp_path / ("pipe.csv" if source == "generic" else "pipe.tsv")
    os.mkfifo(fifo)
    result = {}

    def go():
        try:
            _read(fifo, source)
        except InputError as e:
            result["err"] = str(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert "is not a regular file (a FIFO (named pipe))" in result["err"]
    assert "file not found" not in result["err"] and "Fix: write the data to a regular file" \
        in result["err"]
