"""Results always reflect the input: stage fingerprints cover the input's content, a changed
input or upstream setting re-runs what it must, and config.yaml only names what was computed."""

import json
import os
import re
import shutil

import pandas as pd
import pytest
import yaml
from tiny_data import tiny_overrides, write_tiny

from pdselect.cli import main
from pdselect.config import DataConfig
from pdselect.run.fingerprint import input_fingerprint


# ----------------------------------------------------------------------------- unit
def test_digest_follows_content_not_timestamps(tmp_path):
    f = write_tiny(tmp_path / "d.jsonl")
    cfg = DataConfig(source="generic", path=str(f))
    d0 = input_fingerprint(cfg)["digest"]
    os.utime(f, ns=(1, 1))  # touched, same bytes: small files count by content
    assert input_fingerprint(cfg)["digest"] == d0
    write_tiny(f, tweak=3)  # same size, different ratings
    assert input_fingerprint(cfg)["digest"] != d0


def test_folder_counts_every_file_and_bundled_sources_count_too(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_tiny(folder / "a.jsonl")
    cfg = DataConfig(source="generic", path=str(folder))
    d0 = input_fingerprint(cfg)
    assert d0["n_files"] == 1
    write_tiny(folder / "sub.jsonl.gz")  # whatever a reader may read, in any subfolder
    d1 = input_fingerprint(cfg)
    assert d1["n_files"] == 2 and d1["digest"] != d0["digest"]
    bundled = input_fingerprint(DataConfig(source="usr_topical_chat"))
    assert bundled["kind"] == "files" and bundled["n_files"] >= 3 and bundled["digest"]
    hub = input_fingerprint(DataConfig(source="ultrafeedback", path="openbmb/UltraFeedback"))
    assert hub["kind"] == "hub" and hub["id"] == "openbmb/UltraFeedback"


def test_large_files_count_by_size_and_mtime(tmp_path, monkeypatch):
    import pdselect.run.fingerprint as F

    monkeypatch.setattr(F, "HASH_LIMIT", 10)  # every file is "large" here
    f = write_tiny(tmp_path / "d.jsonl")
    cfg = DataConfig(source="generic", path=str(f))
    d0 = input_fingerprint(cfg)["digest"]
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert input_fingerprint(cfg)["digest"] != d0


# ----------------------------------------------------------------------------- end to end
def _run(*args) -> int:
    return main(["-q", *args])


def _help_ratings(run_dir) -> list:
    return pd.read_parquet(run_dir / "ingest" / "rated.parquet")["helpful"].tolist()


@pytest.fixture()
def tiny(tmp_path):
    data = write_tiny(tmp_path / "d.jsonl")
    run_dir = tmp_path / "run"
    assert _run("run", *tiny_overrides(data, run_dir)) == 0
    return data, run_dir


def test_input_edited_in_place_reruns_everything(tiny):
    data, run_dir = tiny
    before = _help_ratings(run_dir)
    sel_before = (run_dir / "select" / "selection.parquet").stat().st_mtime_ns
    write_tiny(data, tweak=6)  # same path, same size, six ratings changed
    assert _run("run", *tiny_overrides(data, run_dir)) == 0
    after = _help_ratings(run_dir)
    assert after != before and after[:6] == [6 - x for x in before[:6]]
    assert (run_dir / "select" / "selection.parquet").stat().st_mtime_ns != sel_before
    meta = json.loads((run_dir / "ingest" / "meta.json").read_text())
    assert meta["input"]["digest"] == input_fingerprint(
        DataConfig(source="generic", path=str(data)))["digest"]


def test_pointing_data_path_elsewhere_reruns_and_config_names_it(tiny, tmp_path):
    data, run_dir = tiny
    other = write_tiny(tmp_path / "other.jsonl", seed=7)
    assert _run("run", *tiny_overrides(other, run_dir)) == 0
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written["data"]["path"] == str(other)
    ref = tmp_path / "ref"  # a fresh run on the other file gives the same artifacts
    assert _run("run", *tiny_overrides(other, ref)) == 0
    for f in ("ingest/rated.parquet", "aggregate/pairs.parquet", "select/selection.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / f), pd.read_parquet(ref / f))


def test_one_stage_with_a_changed_upstream_setting_reruns_upstream(tiny, caplog):
    data, run_dir = tiny
    n_test = json.loads((run_dir / "aggregate" / "meta.json").read_text())["n_test"]
    with caplog.at_level("INFO"):
        assert main(["score", *tiny_overrides(data, run_dir, "aggregate.test_fraction=0.5")]) == 0
    agg = json.loads((run_dir / "aggregate" / "meta.json").read_text())
    assert agg["n_test"] > n_test  # aggregate re-ran with the new split
    scores = pd.read_parquet(run_dir / "score" / "scores.parquet")
    assert len(scores) == agg["n_train"]  # score ran on the new pairs, through a new proxy
    assert re.search(r"aggregate\s+done", caplog.text) and re.search(r"proxy\s+done", caplog.text)
    # stages after it were computed from the old split: gone, so nothing stale is on disk
    assert not (run_dir / "select").exists() and not (run_dir / "report.md").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["aggregate"]["test_fraction"] \
        == 0.5
    assert _run("run", *tiny_overrides(data, run_dir, "aggregate.test_fraction=0.5")) == 0
    sel = pd.read_parquet(run_dir / "select" / "selection.parquet")
    assert len(sel) == agg["n_train"]


def test_failed_ingest_of_new_data_leaves_nothing_from_the_old(tiny, tmp_path):
    data, run_dir = tiny
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "renamed fields", "text": "x", "help": 3}\n')
    assert _run("run", *tiny_overrides(broken, run_dir)) == 1  # a data error
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written["data"]["path"] == str(broken)
    # no stage is marked done and no artifact of the old data remains
    assert not list(run_dir.glob("*/_SUCCESS"))
    for stage in ("aggregate", "proxy", "score", "select"):
        assert not (run_dir / stage).exists(), stage
    assert not (run_dir / "report.md").exists()


def test_single_stage_on_a_fresh_dir_runs_what_it_reads(tmp_path):
    data = write_tiny(tmp_path / "d.jsonl")
    run_dir = tmp_path / "run"
    assert _run("aggregate", *tiny_overrides(data, run_dir)) == 0
    assert (run_dir / "ingest" / "_SUCCESS").exists()
    assert (run_dir / "aggregate" / "_SUCCESS").exists()
    assert not (run_dir / "proxy").exists()


def test_copied_run_dir_resumes(tiny, tmp_path, caplog):
    """A copied run (the determinism tests do this) is still ours and still current."""
    data, run_dir = tiny
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with caplog.at_level("INFO"):
        assert main(["select", *tiny_overrides(data, copy)]) == 0
    assert "select    skipped" in caplog.text and "ingest    skipped" in caplog.text


def test_a_second_input_file_counts_too(tmp_path):
    """HelpSteer2's preference file is read beside data.path: editing it changes the digest."""
    data = write_tiny(tmp_path / "d.jsonl")
    pref = tmp_path / "preference.jsonl"
    pref.write_text('{"a": 1}\n')
    cfg = DataConfig(source="helpsteer2", path=str(data), preference_path=str(pref))
    before = input_fingerprint(cfg)["digest"]
    pref.write_text('{"a": 2}\n')
    assert input_fingerprint(cfg)["digest"] != before
