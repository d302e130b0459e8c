"""``pdselect validate``: check a config and its input without training anything.

Reads the first rows (or every row with ``full=True``) through the configured reader, then
builds the aggregated pairs in memory, so every error the real run would hit in ingest or
aggregate (schema, bad rows, an aspect with too few pairs, a conflict level the data cannot
support) is found in seconds. Nothing is written.

The checks a run makes before compute live here and are shared, so "validation passed" (with
``--full``) means the run will not fail on its input:

- :func:`preflight`: devices exist on this machine, the run directory may be written
  (``run_pipeline`` calls it before the first stage);
- :func:`check_pairs`: on the aggregated pairs, the aspect names, the floor
  ``aggregate.min_pairs_per_aspect`` (the only one: the proxy stage takes it too), a non-empty
  pool, a budget that keeps at least one pair, the oracle selector's ratings (the aggregate
  stage calls it before writing its pairs; the select stage re-checks the budget).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd

from .config import RunConfig, aspect_name_problem, check_devices
from .errors import ConfigError, PDSelectError, StageError
from .data.rejects import RejectLog

PREVIEW_ROWS = 200


@dataclass
class ValidationReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append("ERROR: " + line)

    def render(self) -> str:
        head = "validation passed" if self.ok else "validation FAILED"
        return "\n".join([head] + ["  " + ln for ln in self.lines])


def preflight(cfg: RunConfig) -> None:
    """Machine and run-directory checks (raise PDSelectError): the devices the config names
    exist here, and ``run_dir`` is new, empty or a pdselect run (artifacts.check_run_dir)."""
    from .run.artifacts import RunDirError, check_run_dir

    check_devices(cfg)
    problem = check_run_dir(cfg.run_dir)
    if problem:
        raise RunDirError(problem)


def check_budget(cfg: RunConfig, n_pool: int) -> int:
    """Pairs the configured budget keeps out of ``n_pool``; an error if none (or too many)."""
    from .select.selectors import budget_size

    s = cfg.select
    if n_pool == 0:
        raise StageError("the selection pool is empty: no train pairs. Fix: add data, or "
                         "lower aggregate.test_fraction.")
    n = budget_size(n_pool, s.budget, s.budget_count)
    if n == 0:
        raise ConfigError("select.budget", f"{s.budget!r} of the {n_pool} train pairs selects "
                          "0 pairs.", f"set select.budget to at least {1 / n_pool:.3g} (one "
                          "pair), or select.budget_count to a count >= 1.")
    return n


def check_pairs(cfg: RunConfig, pairs: pd.DataFrame, aspects: list[str]) -> None:
    """Everything about the aggregated pairs that would stop a later stage (raise)."""
    from .aggregate.pairs import check_aspect_counts
    from .data.schema import delta_col

    for a in aspects:
        problem = aspect_name_problem(a)
        if problem:
            raise StageError(f"the data has an aspect named {a!r}, which {problem}: it would "
                             "overwrite a column of the pair or score tables. Fix: rename "
                             "that aspect in the data (or map it with data.aspect_columns).")
    if len(aspects) < 2:
        raise StageError(f"PD needs at least two aspects, and the pairs have {len(aspects)} "
                         f"({', '.join(map(repr, aspects)) or 'none'}): a pair's PD is how much "
                         "the OTHER aspects disagree with its label, so with one aspect it is 0 "
                         "everywhere. Fix: rate (or map) two or more aspects, e.g. "
                         "data.aspects=[a, b].")
    check_aspect_counts(pairs, list(aspects), cfg.aggregate.min_pairs_per_aspect)
    train = pairs[pairs["split"] == "train"]
    check_budget(cfg, len(train))
    if cfg.select.method == "pd_rati" and any(delta_col(a) not in pairs.columns
                                              for a in aspects):
        raise ConfigError("select.method", "'pd_rati' needs the true rating of every aspect, "
                          "which this data does not have.",
                          "choose another selector (e.g. pd).")


def validate(cfg: RunConfig, full: bool = False) -> ValidationReport:
    """Config is already validated by ``load_config``; here the machine, the run directory and
    the data are checked against it, with the same functions the run uses."""
    rep = ValidationReport()
    try:
        preflight(cfg)
    except PDSelectError as e:
        rep.fail(str(e))
        return rep
    rep.add(f"config: ok (source={cfg.data.source}, selector={cfg.select.method}, "
            f"budget={cfg.select.budget_count or cfg.select.budget})")
    got = _check_input(cfg, full, rep)
    if got is not None:
        _check_aggregate(cfg, got, full, rep)
    return rep


def _check_input(cfg: RunConfig, full: bool, rep: ValidationReport):
    """Read the input (a preview unless ``full``) as the ingest stage does; None on failure."""
    from .data import PairsInput, read_source

    data_cfg = cfg.data if full else dataclasses.replace(
        cfg.data, max_rows=min(cfg.data.max_rows or PREVIEW_ROWS, PREVIEW_ROWS))
    rejects = RejectLog("ingest")
    try:
        got = read_source(data_cfg, rejects)
    except PDSelectError as e:
        rep.fail(str(e))
        return None
    scope = "all rows" if full else f"first {data_cfg.max_rows} records"
    rep.rejects = rejects.counts()
    if isinstance(got, PairsInput):
        rep.add(f"input ({scope}): {len(got.df)} pairs, aspects {got.aspects}")
    else:
        rep.add(f"input ({scope}): {len(got.df)} responses, {got.df['input_id'].nunique()} "
                f"inputs, aspects {got.aspects}, overall {'yes' if got.has_overall else 'no'}")
    for reason, n in rejects.counts().items():
        rep.add(f"  would reject {n}: {reason}")
    return got


def _check_aggregate(cfg: RunConfig, got, full: bool, rep: ValidationReport) -> None:
    """Pair the input as the aggregate stage does and check what the later stages need."""
    from .aggregate.pairs import aggregate, from_pairs_input, holdout_rule
    from .data import PairsInput

    agg_rejects = RejectLog("aggregate")
    try:
        if isinstance(got, PairsInput):
            pairs = from_pairs_input(got.df, cfg.aggregate, cfg.seed, agg_rejects)
        else:
            pairs = aggregate(got, cfg.aggregate, cfg.seed, agg_rejects)
        check_pairs(cfg, pairs, _pair_aspects(got, pairs))
    except PDSelectError as e:
        msg = str(e)
        if not full:
            msg += " (checked on a preview; run with --full to check every row)"
        rep.fail(msg)
        return
    train = pairs[pairs["split"] == "train"]
    rep.add("hold-out: " + holdout_rule(cfg.aggregate, getattr(got, "has_overall", False),
                                        got.source)[1])
    rep.add(f"pairs: {len(pairs)} ({len(train)} train), per aspect "
            f"{train['aspect'].value_counts().sort_index().to_dict()}")
    for reason, n in agg_rejects.counts().items():
        rep.add(f"  aggregate would drop {n}: {reason}")


def _pair_aspects(got, pairs: pd.DataFrame) -> list[str]:
    """The aspects the proxy stage trains (what the aggregate stage records in its meta)."""
    train = pairs[pairs["split"] == "train"]
    return [a for a in got.aspects if (train["aspect"] == a).any()]
