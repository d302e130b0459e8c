"""CLI conventions: --version, -q/-v anywhere, exit codes 0/1/2, one-line errors unless --debug."""

import logging
import subprocess
import sys

import pytest

import pdselect
from pdselect import cli
from pdselect.cli import main, make_parser


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"pdselect {pdselect.__version__}"
    from importlib.metadata import version

    assert version("pdselect") == pdselect.__version__  # one version: pyproject reads it


@pytest.mark.parametrize("argv", [["-q", "validate", "-c", "x.yaml"],
                                  ["validate", "-q", "-c", "x.yaml"],
                                  ["validate", "-c", "x.yaml", "-q"],
                                  ["validate", "-c", "x.yaml", "seed=1", "-q"]])
def test_quiet_before_or_after_the_subcommand(argv):
    args = make_parser().parse_args(argv)
    assert args.quiet and not getattr(args, "verbose", False) and args.config == "x.yaml"


def test_verbose_anywhere_sets_debug_logging():
    def level(argv):
        return cli.log_level(make_parser().parse_args(argv))

    assert level(["-v", "config"]) == level(["config", "-v"]) == logging.DEBUG
    assert level(["config", "--debug"]) == logging.DEBUG
    assert level(["-q", "config"]) == level(["config", "--quiet"]) == logging.WARNING
    assert level(["config"]) == logging.INFO


def test_quiet_silences_info_in_a_fresh_process(tmp_path):
    code = ("import sys; from pdselect.cli import main; sys.exit(main(sys.argv[1:]))")
    argv = ["validate", "-c", "configs/examples/long.yaml", f"run_dir={tmp_path / 'r'}"]
    loud = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    quiet = subprocess.run([sys.executable, "-c", code, *argv, "-q"], capture_output=True,
                           text=True)
    assert loud.returncode == quiet.returncode == 0
    assert " INFO " in loud.stderr and " INFO " not in quiet.stderr


def test_usage_errors_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:  # argparse: unknown subcommand / flag
        main(["frobnicate"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["run", "--no-such-flag"])
    assert e.value.code == 2
    capsys.readouterr()
    # a config error is a usage error: one line, no traceback
    assert main(["config", "select.budgte=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pdselect: error: config key 'select.budgte': unknown key")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["validate", "-c", str(tmp_path / "missing.yaml")]) == 2


def test_data_errors_exit_1_with_one_line(capsys, tmp_path):
    argv = ["-q", "validate", "data.source=generic", f"data.path={tmp_path / 'none.jsonl'}",
            f"run_dir={tmp_path / 'run'}"]
    assert main(argv) == 1  # validate reports it and fails
    assert "file not found" in capsys.readouterr().out
    assert main(["-q", "ingest", *argv[2:]]) == 1  # a stage: the error itself
    err = capsys.readouterr().err
    assert err.startswith("pdselect: error: ") and "file not found" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_debug_shows_the_traceback(capsys, tmp_path):
    argv = ["ingest", "data.source=generic", f"data.path={tmp_path / 'none.jsonl'}",
            f"run_dir={tmp_path / 'run'}"]
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "InputError" in err
    assert err.strip().splitlines()[-1].startswith("pdselect: error: ")
    assert main([*argv, "--debug"]) == 1  # after the subcommand too
    assert "Traceback" in capsys.readouterr().err


def test_runtime_os_errors_are_one_line_and_exit_1(monkeypatch, capsys):
    def boom(args, progress):
        raise FileNotFoundError("proxy.encoder='/nope' is not 'minilm' nor a local model folder")

    monkeypatch.setattr(cli, "_dispatch", boom)
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert err == ("pdselect: error: FileNotFoundError: proxy.encoder='/nope' is not 'minilm' "
                   "nor a local model folder (run with --debug for the traceback)\n")


def test_entry_point_exit_status(tmp_path):
    """Through a real process: the status the shell sees."""
    run = [sys.executable, "-c", "import sys; from pdselect.cli import main; sys.exit(main())"]
    ok = subprocess.run(run + ["config", "--fields"], capture_output=True, text=True)
    assert ok.returncode == 0 and "aggregate.test_fraction = 'auto'" in ok.stdout
    bad = subprocess.run(run + ["config", "seed=-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
