"""pdselect validate: config + input checks without training."""

import json
import re

from pdselect.cli import main


def test_validate_passes_on_bundled_data(capsys):
    assert main(["-q", "validate", "-c", "configs/demo.yaml", "--full"]) == 0
    out = capsys.readouterr().out
    # the demo's SummEval-OP: 32 products x 13 summaries; 2,496 pairs, 30% of inputs held out
    assert "validation passed" in out and "416 responses, 32 inputs" in out
    assert re.search(r"pairs: 2496 \(1716 train\)", out)


def test_validate_reports_bad_rows_and_fails_on_a_wrong_schema(tmp_path, capsys):
    f = tmp_path / "t.jsonl"
    rows = [{"q": "hi", "answer": "a", "h": 3}, {"q": "hi", "answer": "", "h": 2},
            {"q": "hi", "answer": "c", "h": 9}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    base = ["-q", "validate", "data.source=generic", f"data.path={f}",
            "data.columns={input: q, response: answer}", "data.aspect_columns={help: h}",
            "data.scales={help: [1, 5]}", "aggregate.min_pairs_per_aspect=1"]
    rc = main(base)
    out = capsys.readouterr().out
    assert "would reject" in out and "empty response" in out and "malformed JSON" in out
    assert "out of scale" in out
    assert rc in (0, 1)
    rc = main(base[:4] + ["data.columns={input: prompt, response: answer}",
                          "data.aspect_columns={help: h}"])
    out = capsys.readouterr().out
    assert rc == 1 and "validation FAILED" in out and "prompt" in out
