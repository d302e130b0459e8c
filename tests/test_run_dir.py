"""A run directory is owned: pdselect writes and deletes only in folders it created and marked,
and one process at a time (an exclusive lock)."""

import subprocess
import sys
import textwrap

import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect.run.artifacts import LOCK, SENTINEL, RunDir, RunDirError
from pdselect.cli import main


def _err(capsys, *args) -> str:
    assert main(["-q", *args]) == 2
    return capsys.readouterr().err


def _user_folder(path):
    """A folder with a user's files, including one named like a stage folder."""
    (path / "ingest").mkdir(parents=True)
    (path / "ingest" / "precious.txt").write_text("mine")
    (path / "notes.md").write_text("mine too")
    return path


def _intact(path) -> bool:
    return (path / "ingest" / "precious.txt").read_text() == "mine" and \
        (path / "notes.md").read_text() == "mine too" and not (path / SENTINEL).exists()


def test_empty_run_dir_is_an_error(capsys):
    err = _err(capsys, "run", "run_dir=")
    assert "config key 'run_dir': is empty" in err and "Fix: set run_dir to a new or empty" in err


def test_run_dir_that_is_a_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    err = _err(capsys, "run", f"run_dir={f}")
    assert "config key 'run_dir'" in err and "is an existing file, not a folder" in err
    assert "Fix: choose a new or empty folder" in err and f.read_text() == "keep me"


def test_working_directory_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(_user_folder(tmp_path))
    err = _err(capsys, "run", "run_dir=.")
    assert "is the working directory" in err and "Fix: choose an empty or new folder" in err
    assert _intact(tmp_path)
    err = _err(capsys, "run", f"run_dir={tmp_path.parent}")
    assert "a parent of the working directory" in err


def test_non_empty_folder_without_sentinel_is_refused(tmp_path, capsys):
    folder = _user_folder(tmp_path / "mine")
    err = _err(capsys, "ingest", f"run_dir={folder}")
    assert "non-empty folder that pdselect did not create" in err
    assert f"no {SENTINEL} marker" in err and "ingest, notes.md" in err
    assert "Fix: choose an empty or new folder" in err
    assert _intact(folder)


def test_validate_full_reports_the_same_refusal(tmp_path, capsys):
    folder = _user_folder(tmp_path / "mine")
    assert main(["-q", "validate", "--full", f"run_dir={folder}"]) == 1
    out = capsys.readouterr().out
    assert "validation FAILED" in out and "non-empty folder that pdselect did not create" in out


def test_reset_never_deletes_in_an_unmarked_folder(tmp_path):
    folder = _user_folder(tmp_path / "mine")
    with pytest.raises(RunDirError, match="refusing to delete .*has no .pdselect-run marker"):
        RunDir(folder).reset("ingest")
    assert _intact(folder)


def test_empty_or_new_folder_is_claimed_and_marked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (empty, tmp_path / "new" / "deeper"):
        run = RunDir.claim(root)
        assert (root / SENTINEL).is_file() and (root / LOCK).is_file()
        run.release()
        RunDir.claim(root).release()  # released: a second claim succeeds


def test_legacy_run_without_sentinel_is_adopted(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text("seed: 0\n")
    (old / "manifest.json").write_text('{"created": "x", "stages": {}, "environment": {}}')
    RunDir.claim(old).release()
    assert (old / SENTINEL).is_file()


HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()   # hold the lock until the test closes our stdin
""")


def test_second_process_on_the_same_run_dir_fails_fast(tmp_path, capsys):
    data = write_tiny(tmp_path / "d.jsonl")
    run_dir = tmp_path / "run"
    RunDir.claim(run_dir).release()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir / LOCK)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = _err(capsys, "run", *tiny_overrides(data, run_dir))
        assert "is in use by another pdselect process" in err
        assert "Fix: wait for that run to finish, or choose another run_dir" in err
        assert not (run_dir / "ingest").exists()  # failed before any stage started
    finally:
        holder.stdin.close()
        holder.wait()
    assert main(["-q", "ingest", *tiny_overrides(data, run_dir)]) == 0  # lock released on exit
    RunDir.claim(run_dir).release()  # and our own run released its lock too
