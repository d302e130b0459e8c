"""A truncated, emptied, overwritten or deleted run-dir artifact is detected by the checksums in
its stage's marker and the stage is re-run (with everything after it), giving the same result
as an untouched run; a marker never vouches for files it does not match."""

import json

import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect.cli import main

DAMAGES = {
    "truncate": lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),
    "empty": lambda f: f.write_bytes(b""),
    "overwrite": lambda f: f.write_bytes(bytes(reversed(f.read_bytes()))),
    "delete": lambda f: f.unlink(),
}


@pytest.fixture()
def tiny(tmp_path):
    data = write_tiny(tmp_path / "d.jsonl")
    run_dir = tmp_path / "run"
    assert main(["-q", "run", *tiny_overrides(data, run_dir)]) == 0
    return data, run_dir


def _selection(run_dir) -> bytes:
    return (run_dir / "select" / "selection.parquet").read_bytes()


def test_marker_records_a_checksum_of_every_file(tiny):
    _, run_dir = tiny
    files = json.loads((run_dir / "aggregate" / "_SUCCESS").read_text())["_files"]
    assert "aggregate/pairs.parquet" in files and len(files["aggregate/pairs.parquet"]) == 64
    report = json.loads((run_dir / "report" / "_SUCCESS").read_text())["_files"]
    assert "report.md" in report


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("artifact,stage", [("aggregate/pairs.parquet", "aggregate"),
                                            ("score/scores.parquet", "score"),
                                            ("report.md", "report")])
def test_damaged_artifact_reruns_its_stage(tiny, caplog, damage, artifact, stage):
    data, run_dir = tiny
    ref = _selection(run_dir)
    DAMAGES[damage](run_dir / artifact)
    with caplog.at_level("WARNING"):
        assert main(["run", *tiny_overrides(data, run_dir)]) == 0
    assert f"its artifacts ['{artifact}'] are missing or corrupt" in caplog.text
    assert stage in caplog.text
    assert _selection(run_dir) == ref                     # the same result as untouched
    assert (run_dir / artifact).stat().st_size > 0
    caplog.clear()
    with caplog.at_level("WARNING"):                      # and now it is trusted again
        assert main(["run", *tiny_overrides(data, run_dir)]) == 0
    assert "corrupt" not in caplog.text
