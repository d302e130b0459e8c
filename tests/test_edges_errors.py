"""Issue 17, class 4: errors that pointed nowhere. A run_dir given as a URI created folders named
``memory:`` and crashed in pyarrow; a run_dir under a file or /proc, a read-only or full disk
gave raw OSErrors (a torch ``basic_ios::clear`` at the proxy stage); ``init --out`` on a folder
left a temporary; "see the rejects file" pointed at a file ingest never wrote. Each now names
the path, the cause and the fix, and leaves no temporary behind."""

import errno
import json
import os
from pathlib import Path

import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect import pipeline
from pdselect.cli import main
from pdselect.config import load_config
from pdselect.errors import PDSelectError
from pdselect.run import safety

EXAMPLE = Path(__file__).parent.parent / "src" / "pdselect" / "examples" / "wide_ratings.csv"


def _err(capsys, *args, code=2) -> str:
    assert main(["-q", *args]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("uri", ["memory://runs/x", "s3://bucket/run", "gs://b/r",
                                 "file:///tmp/run"])
def test_run_dir_uri_is_refused_up_front(tmp_path, monkeypatch, capsys, uri):
    monkeypatch.chdir(tmp_path)
    data = write_tiny(tmp_path / "d.jsonl")
    err = _err(capsys, "ingest", *tiny_overrides(data, uri))
    assert f"run_dir {uri!r} is a URI" in err and "Fix: give a local folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # no `memory:` folder
    out = main(["-q", "validate", *tiny_overrides(data, uri)])
    assert out != 0 and "is a URI" in capsys.readouterr().out


def test_run_dir_under_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    err = _err(capsys, "ingest", f"run_dir={tmp_path / 'notes.txt' / 'run'}")
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in err and "Fix: choose" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_run_dir_under_proc(capsys):
    err = _err(capsys, "ingest", "run_dir=/proc/pdselect_run")
    assert "cannot create the run directory: /proc/pdselect_run" in err
    assert "a virtual file system such as /proc" in err and "Fix: choose a run_dir" in err


@pytest.mark.parametrize("code,cause", [(errno.EROFS, "the file system is read-only"),
                                        (errno.EACCES, "permission denied"),
                                        (errno.ENOSPC, "the disk is full")])
def test_run_dir_that_cannot_be_created(tmp_path, monkeypatch, capsys, code, cause):
    real = Path.mkdir

    def mkdir(self, *a, **kw):
        if "blocked" in str(self):
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    err = _err(capsys, "ingest", f"run_dir={tmp_path / 'blocked'}")
    assert f"cannot create the run directory: {tmp_path / 'blocked'}: {cause}" in err
    assert "Fix: " in err


def _full_disk_on(monkeypatch, name: str):
    """Writing a temp file of ``name`` fails half-way with ENOSPC."""
    real = Path.write_text

    def write_text(self, text, *a, **kw):
        if self.name.startswith(f".{name}.") and self.name.endswith(".tmp"):
            real(self, text[:10], *a, **kw)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_disk_full_in_a_stage_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                      capsys):
    data = write_tiny(tmp_path / "d.jsonl")
    _full_disk_on(monkeypatch, "meta.json")
    err = _err(capsys, "ingest", *tiny_overrides(data, tmp_path / "run"))
    assert f"writing failed: {tmp_path / 'run' / 'ingest' / 'meta.json'}: the disk is full" in err
    assert "Fix: free space on that disk" in err
    assert _temps(tmp_path / "run") == []
    assert not (tmp_path / "run" / "ingest" / "_SUCCESS").exists()


def test_torch_stream_error_on_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    data = write_tiny(tmp_path / "d.jsonl")
    cfg = load_config(None, tiny_overrides(data, tmp_path / "run"))

    def torch_save_fails(cfg, run, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"
                           "\nbasic_ios::clear: iostream error")

    monkeypatch.setitem(pipeline.STAGE_FUNCS, "ingest", torch_save_fails)
    monkeypatch.setattr(safety, "low_on_space", lambda p, below=0: True)
    with pytest.raises(PDSelectError, match=r"writing failed: .*ingest: the disk is full"):
        pipeline.run_pipeline(cfg, ["ingest"])
    # with space left, the same error is not disguised as a full disk
    monkeypatch.setattr(safety, "low_on_space", lambda p, below=0: False)
    with pytest.raises(RuntimeError, match="basic_ios"):
        pipeline.run_pipeline(cfg, ["ingest"])


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_init_out_pointing_at_a_folder(tmp_path, capsys, force):
    (tmp_path / "cfgs").mkdir()
    err = _err(capsys, "init", "--data", str(EXAMPLE), "--out", str(tmp_path / "cfgs"),
               *force, code=1)
    assert "is a folder; --out names the config FILE to write" in err
    assert f"Fix: pass a file name, e.g. --out {tmp_path / 'cfgs' / 'pdselect.yaml'}" in err
    assert list((tmp_path / "cfgs").iterdir()) == [] and _temps(tmp_path) == []


def test_init_on_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                     capsys):
    real = Path.write_text

    def write_text(self, text, *a, **kw):
        if self.name.endswith(".yaml.tmp"):
            real(self, text[:5], *a, **kw)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "my.yaml"
    err = _err(capsys, "init", "--data", str(EXAMPLE), "--out", str(out), code=1)
    assert f"{out} field '--out': cannot write the config (No space left on device)" in err
    assert "Fix: choose an --out on a writable disk" in err
    assert list(tmp_path.iterdir()) == []


def test_no_usable_row_says_why_instead_of_pointing_at_a_missing_rejects_file(tmp_path,
                                                                             capsys):
    f = tmp_path / "all_bad.jsonl"
    f.write_text("".join(json.dumps({"q": "q", "answer": f"a{i}", "help": 9, "short": 9}) + "\n"
                         for i in range(3)))
    err = _err(capsys, "ingest", *tiny_overrides(f, tmp_path / "run"), code=1)
    assert "see the rejects file" not in err
    assert "every row was rejected: " in err
    assert f"'rating out of scale (helpful: expected 1-5)' x3 (first at {f}:1)" in err
    assert "Fix: correct the rows for the reasons shown" in err
