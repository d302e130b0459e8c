"""Issue 17, class 1: nothing of the user's is ever deleted or overwritten through a symbolic
link in a run directory. A re-run used to delete the files of a folder linked as a stage folder
(exit 0, no message). Every path a run deletes, resets or rewrites is covered: a stage folder, a
link inside one, ``score/sharded``, a report file in the run root, the lock file."""

import os
import shutil

import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect.cli import main
from pdselect.errors import StageError
from pdselect.run.artifacts import LOCK, RunDir, RunDirError, remove_tree


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run (copied per test: one pipeline run for the whole module)."""
    base = tmp_path_factory.mktemp("links")
    data = write_tiny(base / "d.jsonl")
    assert main(["-q", "run", *tiny_overrides(data, base / "run")]) == 0
    return data, base / "run"


def _outside(tmp_path):
    out = tmp_path / "outside"
    out.mkdir()
    for name in ("precious.txt", "rated.parquet", "_SUCCESS", "report.md"):
        (out / name).write_text("mine")
    return out


def _intact(out) -> bool:
    return sorted(os.listdir(out)) == ["_SUCCESS", "precious.txt", "rated.parquet",
                                       "report.md"] and \
        all((out / f).read_text() == "mine" for f in os.listdir(out))


def _copy(finished, tmp_path):
    data, run = finished
    shutil.copytree(run, tmp_path / "run", symlinks=True)
    return data, tmp_path / "run"


def _refused(capsys, data, run, link, target, *extra) -> None:
    assert main(["-q", "run", *tiny_overrides(data, run), *extra]) != 0
    err = capsys.readouterr().err
    assert f"{link} is a symbolic link to {target}" in err, err
    assert "Nothing was deleted" in err and f"Fix: remove the link (`rm {link}`" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("stage", ["ingest", "aggregate", "proxy", "score", "select", "report"])
@pytest.mark.parametrize("change", [[], ["seed=3"]])  # same config; a change re-runs stages
def test_stage_folder_linked_outside_is_refused_and_target_kept(finished, tmp_path, capsys,
                                                                stage, change):
    data, run = _copy(finished, tmp_path)
    out = _outside(tmp_path)
    shutil.rmtree(run / stage)
    os.symlink(out, run / stage)
    _refused(capsys, data, run, run / stage, out, *change)
    assert _intact(out)


@pytest.mark.parametrize("where", ["score/sharded", "ingest/extra", "proxy/aspects"])
def test_link_inside_a_stage_folder_is_refused(finished, tmp_path, capsys, where):
    data, run = _copy(finished, tmp_path)
    out = _outside(tmp_path)
    if (run / where).exists():
        shutil.rmtree(run / where)
    os.symlink(out, run / where)
    _refused(capsys, data, run, run / where, out, "seed=4")
    assert _intact(out)


@pytest.mark.parametrize("name", ["report.md", "config.yaml", "manifest.json", LOCK])
def test_file_link_in_the_run_root_is_refused_and_target_not_rewritten(finished, tmp_path,
                                                                       capsys, name):
    data, run = _copy(finished, tmp_path)
    mine = tmp_path / "my_notes.md"
    mine.write_text("my notes")
    (run / name).unlink(missing_ok=True)
    os.symlink(mine, run / name)
    _refused(capsys, data, run, run / name, mine, "seed=5")
    assert mine.read_text() == "my notes"  # the lock used to be truncated through the link


def test_reset_and_remove_tree_refuse_links_for_direct_callers(tmp_path):
    """The library calls (a stage function driven by hand) are guarded too, not only claim."""
    out = _outside(tmp_path)
    run = RunDir.claim(tmp_path / "run")
    run.release()
    os.symlink(out, run.root / "score")
    for call in (lambda: run.reset("score", keep=("sharded",)), lambda: run.reset("score"),
                 lambda: run.stage("score"), lambda: remove_tree(run.root / "score")):
        with pytest.raises(StageError, match="is a symbolic link to"):
            call()
    (run.root / "select").mkdir()
    os.symlink(out, run.root / "select" / "dpo")
    with pytest.raises(RunDirError, match="select/dpo is a symbolic link"):
        run.reset("select")
    assert _intact(out)


def test_run_root_itself_a_link_to_a_new_folder_works(tmp_path, capsys):
    """A run dir that IS a link (a run on another disk) is the user's explicit choice: allowed;
    only links inside it are refused."""
    data = write_tiny(tmp_path / "d.jsonl")
    real = tmp_path / "scratch"
    real.mkdir()
    os.symlink(real, tmp_path / "run")
    assert main(["-q", "ingest", *tiny_overrides(data, tmp_path / "run")]) == 0
    assert (real / "ingest" / "_SUCCESS").is_file()
