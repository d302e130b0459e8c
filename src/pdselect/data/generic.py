"""Any long table (one row per response) mapped onto the RatedTable by the config:

    data: {source: generic, path: my.jsonl,
           columns: {input: question, response: answer, input_id: qid, overall: score},
           aspect_columns: {accuracy: acc, style: sty},
           scales: {accuracy: [1, 5], style: [1, 5], overall: [1, 10]}}

``input`` and ``response`` are required; without ``input_id`` the id is sha1(input).
``response_id`` = input_id + sha1(response), so a repeated answer to one input is a duplicate.
One ``input_id`` with two different input texts is rejected (the first text is kept); input
and response may be text or chat-message lists (rendered by rows.to_text), nothing else.
An aspect without a scale is not range-checked; its scale is then the observed min-max (logged),
because later stages need some scale to normalise by.
"""

from __future__ import annotations

import logging

from ..config import DataConfig
from ..errors import InputError
from ..rejects import RejectLog
from ..schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, select_aspects, short_hash, shown

log = logging.getLogger(__name__)
CANONICAL = ("input", "response", "input_id", "overall")


def _check_config(cfg: DataConfig, path: str) -> None:
    for key in cfg.columns:
        if key not in CANONICAL:
            raise InputError(path, f"unknown canonical column {key!r}", field="data.columns",
                             expected="keys among " + ", ".join(CANONICAL),
                             fix="map aspects with data.aspect_columns, not data.columns")
    for key in ("input", "response"):
        if key not in cfg.columns:
            raise InputError(path, f"no column mapped to {key!r}", field=f"data.columns.{key}",
                             expected="the name of your column holding the " + key,
                             fix=f"add data.columns.{key}=<your column>")
    if not cfg.aspect_columns:
        raise InputError(path, "no aspect columns mapped", field="data.aspect_columns",
                         expected="aspect name -> column, e.g. {accuracy: acc}",
                         fix="set data.aspect_columns")
    for key, scale in cfg.scales.items():
        if key not in cfg.aspect_columns and key != "overall":
            raise InputError(path, f"scale given for unknown aspect {key!r}",
                             field=f"data.scales.{key}", expected="an aspect of "
                             "data.aspect_columns or 'overall'", fix="correct the name")
        if len(scale) != 2 or not scale[0] < scale[1]:
            raise InputError(path, f"bad scale {scale!r}", field=f"data.scales.{key}",
                             expected="[min, max] with min < max", fix="correct the scale")


def _input_id(b: TableBuilder, rec: dict, cols: dict, text: str | None, file: str,
              line: int) -> str | None:
    """The mapped id column as a string (numbers allowed), else sha1(input text)."""
    if "input_id" not in cols:
        return short_hash(text) if text is not None else None
    value = rec[cols["input_id"]]
    if isinstance(value, (dict, list, bool)) or not str(value).strip():
        b.reject("input_id is not an id", file, line, rec, field=cols["input_id"],
                 expected="a string or integer id", value=shown(value))
        return None
    return str(value)


def read_generic(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg)
    _check_config(cfg, path)
    aspects = select_aspects(cfg.aspects, list(cfg.aspect_columns), path)
    cols = cfg.columns
    has_overall = "overall" in cols
    scales = {k: (float(v[0]), float(v[1])) for k, v in cfg.scales.items()}
    b = TableBuilder(source="generic", aspects=aspects, scales=scales, has_overall=has_overall,
                     rejects=rejects, strict=cfg.strict)
    rating_cols = [cfg.aspect_columns[a] for a in aspects] + ([cols["overall"]] if has_overall
                                                               else [])
    required = [cols["input"], cols["response"], *rating_cols]
    if "input_id" in cols:
        required.append(cols["input_id"])
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, required, nullable=(cols["response"], *rating_cols)):
            continue
        text = b.text(rec[cols["input"]], file, line, rec, cols["input"])
        response = None if text is None else b.text(rec[cols["response"]], file, line, rec,
                                                    cols["response"], empty="empty response")
        input_id = None if response is None else _input_id(b, rec, cols, text, file, line)
        if input_id is None:  # one reject per record, for its first bad field
            continue
        b.add(file, line, rec, input_id=input_id, input=text,
              response_id=f"{input_id}:{short_hash(response, 8)}", response=response,
              ratings={a: rec[cfg.aspect_columns[a]] for a in aspects},
              overall=rec[cols["overall"]] if has_overall else None)
    table = b.finish()
    for a in aspects + (["overall"] if has_overall else []):
        if a not in table.scales:
            col = table.df[a]
            table.scales[a] = (float(col.min()), float(col.max()))
            log.warning("generic: no scale for %r; using the observed range %s (set "
                        "data.scales.%s to range-check it)", a, table.scales[a], a)
    return table
