"""Issue 17, class 5: `pdselect init` (and select_pairs) guesses that cost users. A numeric
metadata column (n_raters, turn) became an aspect silently; a scale widened to hold a stray
rating without a word; a constant column vanished without the reason. Now every such guess is
said on screen and in the written config's comments, with what to do if it is wrong."""

import json
import random

import pandas as pd
import pytest

import pdselect
from pdselect import pipeline
from pdselect.cli import main
from pdselect.config import load_config
from pdselect.data.sniff import sniff


def _file(tmp_path, **extra_cols):
    r = random.Random(0)
    rows = []
    for i in range(30):
        for j in range(4):
            row = {"prompt": f"question {i}?", "response": f"answer {j} to {i} " + "x" * j,
                   "helpfulness": r.randint(1, 5), "honesty": r.randint(1, 5),
                   "n_raters": r.choice([3, 5]), "turn": j, "constant": 4}
            row.update({k: f(i, j) for k, f in extra_cols.items()})
            rows.append(row)
    rows[13]["honesty"] = 7  # one stray rating outside 1-5
    f = tmp_path / "meta.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    return f


def test_metadata_columns_are_left_out_and_said(tmp_path, capsys):
    f = _file(tmp_path)
    out = tmp_path / "meta.yaml"
    assert main(["-q", "init", "--data", str(f), "--out", str(out)]) == 0
    screen = capsys.readouterr().out
    cfg = load_config(out)
    assert cfg.data.aspects == ["helpfulness", "honesty"]
    text = out.read_text()
    for col in ("n_raters", "turn"):
        assert f"CHECK: column {col!r} left out: its name looks like metadata" in screen
        assert f"# left out: {col!r}: its name looks like metadata" in text
    assert "column 'constant' is constant (4 on every row): left out, since a rating that " \
           "never varies cannot prefer one response over another" in screen


def test_widened_scale_is_said_with_the_narrow_alternative(tmp_path, capsys):
    f = _file(tmp_path)
    out = tmp_path / "meta.yaml"
    assert main(["-q", "init", "--data", str(f), "--out", str(out)]) == 0
    screen = capsys.readouterr().out
    note = ("CHECK: scale of 'honesty' guessed [1, 7] to hold every rating, but only 1 of 120 "
            "sampled ratings lie outside [1, 5] (values 7): if the scale is 1-5, set "
            "data.scales.honesty: [1, 5]")
    assert note in screen and note in out.read_text()
    assert load_config(out).data.scales["honesty"] == [1, 7]  # the guess stays, but is said


def test_a_value_doubtful_column_is_kept_but_marked(tmp_path):
    f = _file(tmp_path, views=lambda i, j: 1000 * (i % 4) + 7 * j)  # 0..3021, not a rating
    s = sniff(str(f))
    assert "views" in s.aspects
    assert s.doubtful["views"].startswith("whole numbers over a wide range (0..")
    from pdselect.init_config import render_config

    assert "# CHECK (guessed) 'views': whole numbers over a wide range" in render_config(
        s, "runs/x")


def test_metadata_named_columns_kept_when_they_are_all_there_is(tmp_path):
    rows = [{"prompt": f"q{i}", "response": f"a{j}", "num_words": j + i % 3,
             "turn_quality": (i * j) % 5 + 1} for i in range(10) for j in range(3)]
    f = tmp_path / "few.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    s = sniff(str(f))
    assert set(s.aspects) == {"num_words", "turn_quality"}
    assert set(s.doubtful) == {"num_words", "turn_quality"}


class _Stop(Exception):
    pass


def test_select_pairs_leaves_metadata_and_constant_columns_out(tmp_path, monkeypatch, caplog):
    got = {}

    def fake(cfg, stages=None, **kw):
        got["cfg"] = cfg
        raise _Stop

    monkeypatch.setattr(pipeline, "run_pipeline", fake)
    df = pd.DataFrame({"prompt": ["q1", "q1", "q2", "q2"], "response": list("abcd"),
                       "help": [1, 2, 3, 4], "honest": [4, 3, 2, 1], "n_raters": [3, 5, 3, 5],
                       "same": [2, 2, 2, 2]})
    with pytest.raises(_Stop):
        pdselect.select_pairs(df, run_dir=tmp_path / "run")
    assert sorted(got["cfg"].data.aspect_columns) == ["help", "honest"]
    warned = caplog.text
    assert "numeric column 'n_raters' is not used as an aspect (named like metadata" in warned
    assert "numeric column 'same' is not used as an aspect (constant" in warned


@pytest.mark.parametrize("values,note", [
    (lambda i, j: ["good", "bad", "ok"][(i + j) % 3], "CHECK: column 'overall' holds text"),
    (lambda i, j: 3 * i + j, "CHECK: column 'overall' looks like an id"),
])
def test_init_and_validate_agree_on_the_overall(tmp_path, capsys, values, note):
    """A column named `overall` is the reader's overall whatever sniffing thought of it: the
    written config said 'overall no' and validate then found one."""
    rows = [{"prompt": f"q{i}", "response": f"a{j} {i}", "help": (i + j) % 5 + 1,
             "style": (i * j) % 5 + 1, "overall": values(i, j)}
            for i in range(20) for j in range(3)]
    f = tmp_path / "ov.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = tmp_path / "ov.yaml"
    main(["-q", "init", "--data", str(f), "--out", str(out)])
    screen = capsys.readouterr().out
    assert "overall yes" in screen.splitlines()[0] and note in screen
    assert "input (all rows): 60 responses, 20 inputs, aspects ['help', 'style'], overall " \
           "yes" in screen
