"""The report is safe and exact: user labels are escaped in Markdown, and ingest counts tell
dropped responses from rejected ratings."""

import json
import re

from tiny_data import tiny_overrides, write_tiny

from pdselect.cli import main
from pdselect.report.run_report import md_escape, split_ingest_rejects

HOSTILE = "x|y*z_`<b>"  # an aspect name that would break a table, emphasise, open HTML/code


def test_md_escape_neutralises_markdown():
    s = md_escape("a|b*c_d`e<f>g\nh [l](u) \\")
    assert s == "a\\|b\\*c\\_d\\`e\\<f\\>g h \\[l\\](u) \\\\"
    assert "\n" not in md_escape("two\nlines\r\nhere")


def test_split_ingest_rejects():
    assert split_ingest_rejects({"empty response": 2, "rating out of scale (h: expected 1-5)": 3,
                                 "rating not a number (h)": 1}) == (2, 4)


def _cells(line: str) -> list[str]:
    """Table cells, splitting on unescaped pipes only."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_report_escapes_labels_and_separates_counts(tmp_path):
    data = write_tiny(tmp_path / "d.jsonl")
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    rows[0]["help"] = 9  # a rating out of scale: rejected, response kept (concise is rated)
    rows[1]["answer"] = "   "  # an empty response: dropped
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = tmp_path / "run_*a*|b"
    over = tiny_overrides(data, run_dir, aspect=HOSTILE)
    assert main(["-q", "run", *over]) == 0
    md = (run_dir / "report.md").read_text()
    assert HOSTILE not in md and md_escape(HOSTILE) in md
    assert "run\\_\\*a\\*\\|b" in md
    # every table row has as many cells as its header: no label split a row
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            n = len(_cells(lines[i - 1]))
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert len(_cells(lines[j])) == n, lines[j]
                j += 1
    assert "1 records/responses dropped, 1 ratings rejected (response kept)" in md
    assert "| ingest | rating rejected (response kept) |" in md
    assert "| ingest | response dropped | empty response | 1 |" in md
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["ingest_counts"] == {"dropped": 1, "ratings_rejected": 1}
