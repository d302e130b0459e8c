"""The pipeline: one function per stage, stages talk only through files in the run directory.

    ingest -> aggregate -> proxy -> score -> select -> report

``run_pipeline(cfg)`` runs every stage whose completion marker is missing; a finished stage is
skipped, a stage that was killed half-way is reset and re-run. Each stage function can also be
called on its own (the CLI's subcommands do exactly that).

A stage's fingerprint covers the config sections it (and every stage before it) reads AND the
content of the input data (fingerprint.py). Before any stage runs, every finished stage whose
fingerprint no longer matches is invalidated (marker and artifacts removed), so ``config.yaml``
always describes every finished stage; asking for one stage runs the stale or missing stages
before it first. The run directory is claimed (sentinel + exclusive lock, artifacts.RunDir).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml

from .run.artifacts import MARKER, RunDir, read_json, write_text
from .config import RunConfig
from .errors import StageError
from .stages import (ALL_STAGES, POLICY_STAGES, STAGE_FUNCS, STAGES,  # noqa: F401 (re-exported)
                     config_fingerprint, stage_aggregate, stage_ingest, stage_proxy,
                     stage_report, stage_score, stage_select)

log = logging.getLogger(__name__)
__all__ = ["STAGES", "ALL_STAGES", "POLICY_STAGES", "STAGE_FUNCS", "config_fingerprint",
           "stage_ingest", "stage_aggregate", "stage_proxy", "stage_score", "stage_select",
           "stage_report", "run_stage", "run_pipeline", "prepare_run", "plan_stages",
           "invalidate_stale", "upstream"]


# ----------------------------------------------------------------------------- driver
def upstream(name: str) -> list[str]:
    """The stages ``name`` reads from (every pipeline stage before it)."""
    return [b for b in ALL_STAGES[: ALL_STAGES.index(name)] if b not in POLICY_STAGES]


def invalidate_stale(cfg: RunConfig, run: RunDir) -> list[str]:
    """Remove every finished stage whose fingerprint differs from ``cfg``'s (and everything
    after it): after this, every stage with a marker was computed from ``cfg`` and its input,
    and no artifact of another config or input is left (a stale score stage's shards carry its
    old fingerprint, so they could not be resumed anyway)."""
    stale = False
    dropped = []
    for name in ALL_STAGES:
        if not run.is_done(name):
            continue
        if not stale:
            stale = read_json(run.root / name / MARKER).get("_config") != \
                config_fingerprint(cfg, name)
        if stale:
            _drop_stage(run, name)
            dropped.append(name)
            log.info("%-9s config changed since it finished%s: its results were removed "
                     "(they run again when needed)", name,
                     "" if len(dropped) == 1 else f" (or an earlier stage, {dropped[0]}, did)")
    return dropped


def _drop_stage(run: RunDir, name: str) -> None:
    if name == "report":
        from .run.artifacts import ROOT_FILES

        for f in ROOT_FILES["report"]:
            (run.root / f).unlink(missing_ok=True)
    run.reset(name)


def run_stage(name: str, cfg: RunConfig, run: RunDir, force: bool = False, **kw) -> dict:
    """Run one stage unless it already finished with the same relevant config."""
    fp = config_fingerprint(cfg, name)
    if run.is_done(name) and not force:
        done = read_json(run.root / name / MARKER)
        bad = run.corrupt_files(name) if done.get("_config") == fp else []
        if done.get("_config") == fp and not bad:
            log.info("%-9s skipped (finished earlier; see %s)", name, run.root / name)
            return done
        if bad:
            log.warning("%-9s its artifacts %s are missing or corrupt (checksum mismatch since "
                        "the stage finished): running it again", name, bad)
        else:
            log.info("%-9s config changed since it finished: running it again", name)
    for before in upstream(name):
        if not run.is_done(before):
            raise StageError(f"stage '{name}' needs '{before}' to have finished in {run.root}. "
                             f"Fix: pdselect run (or pdselect {before}) first.")
        if read_json(run.root / before / MARKER).get("_config") != config_fingerprint(cfg, before):
            raise StageError(f"stage '{name}' would read '{before}', which was computed from "
                             f"another config or input. Fix: use `pdselect {name}` or "
                             "run_pipeline, which re-run stale stages first.")
    # everything after a stage that (re)runs is stale: drop its marker first, so a failure
    # here never leaves a later stage marked done on top of a missing or changed one
    for later in ALL_STAGES[ALL_STAGES.index(name) + 1:]:
        (run.root / later / MARKER).unlink(missing_ok=True)
    if name != "report":
        # a killed earlier attempt may have left partial files; finished score shards are
        # kept (they resume) unless the config they were made with changed
        run.reset(name, keep=("sharded",) if name == "score" else ())
    else:  # the report is written into the run root: drop temp files a killed write left
        for tmp in run.root.glob(".report.*.tmp"):
            tmp.unlink()
    t0 = time.perf_counter()
    try:
        summary = STAGE_FUNCS[name](cfg, run, **kw)
    except (OSError, RuntimeError) as e:  # disk full / read-only: path, cause, fix (issue 17)
        from .run.artifacts import storage_error

        better = storage_error(e, run.root / name)
        if better is None:
            raise
        raise better from e
    dt = time.perf_counter() - t0
    run.stage(name)
    run.mark_done(name, {**summary, "_config": fp})
    run.record_stage(name, dt, summary, cfg.seed)
    log.info("%-9s done in %.1fs: %s", name, dt, _one_line(summary))
    return summary


def _one_line(summary: dict) -> str:
    parts = []
    for k, v in summary.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.3f}")
        elif isinstance(v, (int, str)):
            parts.append(f"{k}={v}")
    return ", ".join(parts[:6])


def prepare_run(cfg: RunConfig) -> RunDir:
    """Check the machine and the run folder, claim it (sentinel + lock; the caller releases
    it), remove stages computed from another config or input, write the resolved config."""
    from .validate import preflight

    preflight(cfg)
    run = RunDir.claim(cfg.run_dir)
    try:
        invalidate_stale(cfg, run)
        write_text(run.root / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except BaseException:
        run.release()
        raise
    return run


def plan_stages(stages: list[str] | None) -> list[str]:
    """The requested stages plus every stage they read from, in pipeline order."""
    wanted = set(stages or STAGES)
    for name in list(wanted):
        wanted |= set(upstream(name))
    return [name for name in ALL_STAGES if name in wanted]


def run_pipeline(cfg: RunConfig, stages: list[str] | None = None, progress: bool = False,
                 force: bool = False) -> Path:
    """Run the stages in order (all by default), after any earlier stage that is missing or
    stale. ``force`` re-runs the requested stages even if finished. Returns the run directory."""
    requested = set(stages or STAGES)
    run = prepare_run(cfg)
    try:
        for name in plan_stages(stages):
            kw = {"progress": progress} if name == "proxy" else {}
            run_stage(name, cfg, run, force=force and name in requested, **kw)
    finally:
        run.release()
    return run.root
