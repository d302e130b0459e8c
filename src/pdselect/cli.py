"""Command line: every subcommand calls one public library function.

    pdselect run --config configs/demo.yaml [key=value ...]     all stages
    pdselect ingest|aggregate|proxy|score|select|report --config ...   one stage
    pdselect align|eval --config ...     DPO/DFPO on the selection; held-out evaluation
    pdselect validate --config ... [--full]                      check config + input, no training
    pdselect experiment --config configs/experiment_cpu.yaml     the paper's grid, measured
    pdselect config [--fields]                                   resolved config / field help
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .errors import PDSelectError

STAGE_CMDS = ["ingest", "aggregate", "proxy", "score", "select", "report", "align", "eval"]


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pdselect", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--config", "-c", help="YAML config file")
        sp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. select.budget=0.5")

    sp = sub.add_parser("run", help="run every stage (finished ones are skipped)")
    common(sp)
    sp.add_argument("--force", action="store_true", help="re-run finished stages too")
    for name in STAGE_CMDS:
        sp = sub.add_parser(name, help=f"run the {name} stage only")
        common(sp)
        sp.add_argument("--force", action="store_true", help="re-run even if finished")
    sp = sub.add_parser("validate", help="check the config and the input schema; trains nothing")
    common(sp)
    sp.add_argument("--full", action="store_true", help="read every row, not just the first ones")
    sp = sub.add_parser("experiment", help="the paper's method x conflict x budget x seed grid")
    common(sp)
    sp.add_argument("--out", default="runs/experiment", help="output folder")
    sp = sub.add_parser("config", help="print the resolved config, or every field's help")
    common(sp)
    sp.add_argument("--fields", action="store_true", help="list every key with default and help")
    return p


def _setup_logging(args) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    _setup_logging(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    progress = not args.quiet and sys.stderr.isatty()
    try:
        return _dispatch(args, progress)
    except PDSelectError as e:
        print(f"pdselect: error: {e}", file=sys.stderr)
        return 2


def _dispatch(args, progress: bool) -> int:
    from .config import describe_fields, load_config

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
        from .config import check_devices
        from .experiment import run_experiment

        check_devices(cfg)  # before any compute, as run and validate do

        command = "pdselect " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
        info = run_experiment(cfg, args.out, command=command)
        print(f"experiment: {info['n_rows']} result rows in {info['wall_seconds']} s -> "
              f"{args.out}/results.md")
        return 0
    from .pipeline import run_pipeline

    stages = None if args.cmd == "run" else [args.cmd]
    root = run_pipeline(cfg, stages=stages, progress=progress, force=args.force)
    if args.cmd in ("run", "report"):
        print(f"report: {root / 'report.md'}")
        print(f"selection: {root / 'select' / 'selection.parquet'}")
        print(f"TRL-ready dataset: {root / 'select' / ('dpo.' + cfg.select.output_format)}")
    else:
        print(f"{args.cmd}: done -> {root / args.cmd}")
        if args.cmd == "eval":
            print((root / "eval" / "metrics.json").read_text())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
