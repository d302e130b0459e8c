"""Notebook API: PD selection on an in-memory dataset, through the same pipeline as the CLI.

    import pdselect
    kept = pdselect.select_pairs(pairs_ds, budget=0.3)           # datasets.Dataset in, out
    kept = pdselect.select_pairs(df, aspects=["helpfulness", "honesty"], budget=0.3,
                                 run_dir="runs/nb")               # keep report.html & co.

``dataset`` is a ``datasets.Dataset``, a pandas DataFrame or a list of dicts, in one of two
shapes (the same as the ``pairs`` and ``generic`` sources):

* per-aspect pairs: ``prompt``, ``chosen``, ``rejected``, ``aspect`` (optional ``id``);
* rated responses, one row per response: ``prompt`` (or ``input``), ``response``, one numeric
  column per aspect (``aspects=``; default: every numeric column but ``overall``), optional
  ``input_id`` and ``overall`` (held-out evaluation only).

The table is written once as JSON Lines into the run directory (``<run>/input/data.jsonl``) and
the pipeline runs on it (ingest -> aggregate -> proxy -> score -> select, plus the report when a
``run_dir`` is given): nothing is re-implemented, every check, reject file and warning is the
CLI's. Re-running with the same ``run_dir`` and data resumes (only changed stages re-run).
Without ``run_dir`` a temporary folder is used and removed afterwards.

Returns the kept pairs in selector order as a ``datasets.Dataset``: exactly the select stage's
``select/dpo`` dataset (``prompt``, ``chosen``, ``rejected`` as text or message lists, plus
``pair_id``, ``aspect``, ``rank``, ``pd`` and one ``gap__<aspect>`` per aspect).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .errors import InputError

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("prompt", "chosen", "rejected", "aspect")
_NOT_ASPECTS = {"input_id", "id", "overall", "response_id", "pair_id"}


def _frame(dataset: Any) -> pd.DataFrame:
    if isinstance(dataset, pd.DataFrame):
        return dataset
    if hasattr(dataset, "to_pandas") and hasattr(dataset, "column_names"):  # datasets.Dataset
        return dataset.to_pandas()
    if isinstance(dataset, (list, tuple)):
        return pd.DataFrame(list(dataset))
    raise TypeError(f"select_pairs needs a datasets.Dataset, a pandas DataFrame or a list of "
                    f"dicts, not {type(dataset).__name__}")


def data_config(df: pd.DataFrame, path: Path, aspects: list[str] | None,
                scales: dict[str, Iterable[float]] | None) -> dict:
    """The ``data`` section that reads ``df`` (written to ``path``) with the right source."""
    cols = set(df.columns)
    if set(PAIR_COLUMNS) <= cols:
        return {"source": "pairs", "path": str(path), "aspects": list(aspects or [])}
    text = next((c for c in ("input", "prompt") if c in cols), None)
    if text is None or "response" not in cols:
        raise InputError("select_pairs", f"columns {sorted(map(str, cols))} are neither "
                         "per-aspect pairs nor rated responses",
                         expected="prompt, chosen, rejected, aspect; or prompt (or input), "
                                  "response and one numeric column per aspect",
                         fix="rename your columns (e.g. df.rename(columns={...}))")
    if not aspects:
        aspects = _guess_aspects(df, text)
    missing = [a for a in aspects if a not in cols]
    if missing or not aspects:
        raise InputError("select_pairs", f"aspect columns {missing or aspects} not found",
                         expected=f"numeric rating columns among {sorted(map(str, cols))}",
                         fix="pass aspects=[...] naming your rating columns")
    mapping = {"input": text, "response": "response"}
    mapping.update({k: k for k in ("input_id", "overall") if k in cols})
    data = {"source": "generic", "path": str(path), "columns": mapping,
            "aspect_columns": {a: a for a in aspects}}
    if scales:
        data["scales"] = {k: [float(v) for v in s] for k, s in scales.items()}
    return data


def _guess_aspects(df: pd.DataFrame, text: str) -> list[str]:
    """The numeric columns that can be ratings: not ids, not constant, not named like metadata
    (n_raters, turn, length, ...; the rule of ``pdselect init``). What is left out is logged as
    a warning with the reason (issue 17: such columns silently became aspects)."""
    from .data.sniff_generic import METADATA_PATTERN

    types = pd.api.types
    numeric = [c for c in df.columns if c not in _NOT_ASPECTS | {text, "response"}
               and types.is_numeric_dtype(df[c]) and not types.is_bool_dtype(df[c])]
    why = {}
    for c in numeric:
        if df[c].nunique(dropna=True) <= 1:
            why[c] = "constant: cannot prefer one response over another"
        elif METADATA_PATTERN.search(str(c)):
            why[c] = "named like metadata (a count, length, position or time)"
    kept = [c for c in numeric if c not in why]
    if len(kept) < 2:  # too few without them: keep the metadata-like ones, still warned
        kept = [c for c in numeric if not why.get(c, "").startswith("constant")]
    for c, reason in why.items():
        if c not in kept:
            log.warning("select_pairs: numeric column %r is not used as an aspect (%s); pass "
                        "aspects=[...] to use it", c, reason)
        else:
            log.warning("select_pairs: numeric column %r used as an aspect although %s; pass "
                        "aspects=[...] to choose", c, reason)
    log.info("select_pairs: aspects = the rating-like numeric columns %s", kept)
    return kept


def _write_input(df: pd.DataFrame, path: Path) -> None:
    from .run.artifacts import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    text = df.to_json(orient="records", lines=True, force_ascii=False)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return  # unchanged: keep its mtime so the run's fingerprints stay valid
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def select_pairs(dataset: Any, aspects: list[str] | None = None, budget: float | None = None,
                 *, method: str | None = None, budget_count: int | None = None,
                 chat_format: str | None = None, stratify_by_aspect: bool | None = None,
                 scales: dict[str, Iterable[float]] | None = None, seed: int | None = None,
                 run_dir: str | Path | None = None, config: str | Path | None = None,
                 overrides: list[str] | None = None, report: bool | None = None):
    """Select preference pairs by PD from an in-memory table; returns a ``datasets.Dataset``.

    ``aspects``: aspects to keep (pairs) or the rating columns (rated responses).
    ``budget`` / ``budget_count``, ``method``, ``chat_format``, ``stratify_by_aspect``,
    ``seed``: the ``select.*`` keys and ``seed``; an argument left out takes the value of
    ``config`` when it sets one, else the config default (budget 0.3, method pd, chat_format
    standard, seed 0). ``scales``: aspect -> [min, max] for rated responses (default: the
    observed range). ``config``: a YAML config to start from (the CLI's loader: duplicate keys
    refused; its ``run_dir`` is used when ``run_dir`` is not passed; a ``data.path`` or
    ``data.source`` in it is an error, the dataset argument is the data); ``overrides``: dotted
    ``key=value`` strings applied last (e.g. ``["proxy.epochs=50"]``). ``run_dir``: keep the
    run (report.md, report.html, select/inspect.parquet); ``report`` defaults to
    ``run_dir is not None``."""
    from datasets import Dataset

    from .select.dpo_data import read_pairs
    from .run.artifacts import RunDir
    from .config import load_config
    from .pipeline import STAGES, run_pipeline

    df = _frame(dataset)
    user = _user_config(config)
    if run_dir is None:
        run_dir = user.pop("run_dir", None)
    user.pop("run_dir", None)
    tmp = None
    if run_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="pdselect-"))
        root = tmp / "run"
    else:
        root = Path(run_dir)
    try:
        # claim first (refuses folders that are not pdselect runs), then write the input inside
        RunDir.claim(root).release()
        path = root / "input" / "data.jsonl"
        given = {"method": method, "budget": budget, "budget_count": budget_count,
                 "chat_format": chat_format, "stratify_by_aspect": stratify_by_aspect}
        base = {"run_dir": str(root), "data": data_config(df, path, aspects, scales),
                "select": {k: v for k, v in given.items() if v is not None}}
        if seed is not None:
            base["seed"] = seed
        cfg = load_config(None, overrides, base=_with_user_config(base, user))
        _write_input(df, path)
        with_report = run_dir is not None if report is None else report
        stages = STAGES if with_report else STAGES[: STAGES.index("select") + 1]
        run_pipeline(cfg, stages=stages)
        out = Dataset.from_pandas(read_pairs(root / "select" / "dpo"), preserve_index=False)
        if tmp is None:
            out.info.description = f"pdselect selection; run directory {root}"
        return out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _user_config(config: str | Path | None) -> dict:
    """The user's YAML config read by the CLI's loader (duplicate keys refused, ``<<:`` merge
    keys kept). Its data.path / data.source would be replaced by the dataset argument: an
    error rather than a setting silently ignored (issue 17)."""
    if not config:
        return {}
    from .config.loading import read_config_file
    from .errors import ConfigError

    user = read_config_file(config)
    data = user.get("data") if isinstance(user.get("data"), dict) else {}
    for key in ("path", "source"):
        if data.get(key):
            raise ConfigError(f"data.{key}", f"is set in {config} ({data[key]!r}), but "
                              "select_pairs reads the dataset argument: the file's data."
                              f"{key} would be ignored.",
                              f"remove data.{key} from the file, or run that data with "
                              f"`pdselect run -c {config}`.")
    return user


def _with_user_config(base: dict, user: dict) -> dict:
    """The user's config with ``base`` (the arguments actually passed) merged over it: an
    argument wins, a key the arguments leave out keeps the file's value."""
    from .config.loading import merge_config

    return merge_config(user, base)
