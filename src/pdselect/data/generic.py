"""Your own rated table, in either shape, mapped onto the RatedTable by the config.

Wide (one row per response, one column per aspect)::

    question,answer,accuracy,style          data: {source: generic, path: my.csv,
    "2+2?","4",5,3                                 columns: {input: question, response: answer},
    "2+2?","5",1,4                                 aspects: [accuracy, style],
                                                   scales: {accuracy: [1, 5], style: [1, 5]}}

Long (one row per response x aspect; ``data.shape: long``, or detected)::

    {"prompt": "2+2?", "response": "4", "aspect": "accuracy", "rating": 5}
    {"prompt": "2+2?", "response": "4", "aspect": "style", "rating": 3}

Columns the file already names ``input`` (or ``prompt``), ``response``, ``input_id``,
``response_id``, ``overall`` and, for the long shape, ``aspect`` and ``rating`` (or ``score``)
need no ``data.columns`` entry; in the wide shape an aspect listed in ``data.aspects`` with a
column of the same name needs no ``data.aspect_columns`` entry (``data.aspect_columns`` maps
aspect name -> column otherwise). Every mapping problem of a file is reported at once, in one
error, with the closest column of the FILE for a misspelt name.

Ids: without ``input_id`` the id is sha1(input); ``response_id`` = input_id + (the mapped
response_id column, else sha1(response)). Repeated ratings of one response are AVERAGED in both
shapes (the mqm source's rule; data/repeats.py): in the wide shape a response text given again
under the same input (one row per rater) adds its ratings to the first row's mean. One ``input_id`` with two different input texts is rejected (the first text
is kept); input and response may be text or chat-message lists (rendered by rows.to_text).

Long shape: the rows of one response (same input_id and response_id, else the same response
text) are merged; an aspect value ``overall`` is the overall rating (as is an ``overall`` column,
whose value must then agree across the response's rows). A second rating of the same aspect for
one response (one row per rater, or the same response text on two rows) are AVERAGED, as the
mqm source averages its raters: each rating is range-checked on its own line, the mean of the
valid ones is the response's rating, and the count of such responses is in the rejects file
("... ratings averaged (kept, not dropped)"); rows of aspects left out by
``data.aspects`` are counted ("aspect not selected").

An aspect without a scale is not range-checked; its scale is then the observed min-max (logged),
because later stages need some scale to normalise by. Without an overall, the overall
preference used for evaluation is the mean of the aspects rescaled to [0, 1] (aggregate/pairs.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import logging
import math
from dataclasses import dataclass, field

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .schema import RatedTable
from .loading import iter_records, resolve_path
from .repeats import AVERAGED
from .rows import TableBuilder, parse_rating, select_aspects, short_hash, shown

log = logging.getLogger(__name__)
CANONICAL = ("input", "response", "input_id", "response_id", "overall")
LONG_ONLY = ("aspect", "rating")
# the column names that need no mapping, tried in order
DEFAULT_NAMES = {"input": ("input", "prompt"), "response": ("response",),
                 "input_id": ("input_id",), "response_id": ("response_id",),
                 "overall": ("overall",), "aspect": ("aspect",), "rating": ("rating", "score")}
PEEK = 200  # records whose keys name the file's columns


@dataclass
class Mapping:
    """The config resolved against one file's columns."""

    shape: str
    cols: dict[str, str]  # canonical name -> column
    aspect_columns: dict[str, str] = field(default_factory=dict)  # wide: aspect -> column


def peek_columns(path: str, cfg: DataConfig) -> list[str]:
    """Column names of the first records, in order of appearance (file errors raise here)."""
    keys: dict[str, None] = {}
    records = iter_records(path, dataclasses.replace(cfg, strict=False), RejectLog("peek"))
    try:
        for _, _, rec in itertools.islice(records, PEEK):
            for k in rec:
                keys.setdefault(str(k))
    finally:
        records.close()
    return list(keys)


def _closest(name: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
    return f" (closest column: '{close[0]}')" if close else ""


def _detect_shape(cfg: DataConfig, have: set[str]) -> str:
    if cfg.shape != "auto":
        return cfg.shape
    if "aspect" in cfg.columns or "rating" in cfg.columns:
        return "long"
    listed_are_columns = bool(cfg.aspects) and all(a in have for a in cfg.aspects)
    if (not cfg.aspect_columns and not listed_are_columns and "aspect" in have
            and any(n in have for n in DEFAULT_NAMES["rating"])):
        return "long"
    return "wide"


def resolve_mapping(cfg: DataConfig, keys: list[str], path: str) -> Mapping:
    """The canonical columns and aspects for a file with columns ``keys``; every problem is
    collected and raised as ONE InputError."""
    have = set(keys)
    problems = _unknown_canonical_names(cfg)
    shape = _detect_shape(cfg, have)
    if shape == "wide":
        for key in LONG_ONLY:
            if key in cfg.columns:
                problems.append(f"data.columns.{key} is for the long shape (one row per "
                                "response x aspect); set data.shape=long, or remove it")
    cols = _map_canonical(cfg, keys, shape, problems)
    used = _mapped_once(cols, problems)
    aspect_columns: dict[str, str] = {}
    if shape == "wide":
        aspect_columns = _map_aspect_columns(cfg, keys, used, problems)
    elif cfg.aspect_columns:
        problems.append("data.aspect_columns is for the wide shape; in the long shape the "
                        f"aspects are the values of column '{cols.get('aspect', 'aspect')}' "
                        "(choose some with data.aspects), or set data.shape=wide")
    if problems:
        raise _mapping_error(path, shape, keys, problems)
    return Mapping(shape=shape, cols=cols, aspect_columns=aspect_columns)


def _unknown_canonical_names(cfg: DataConfig) -> list[str]:
    """A problem for each ``data.columns`` key that is not a canonical name."""
    problems: list[str] = []
    for key in cfg.columns:
        if key not in CANONICAL + LONG_ONLY:
            close = difflib.get_close_matches(key, CANONICAL + LONG_ONLY, n=1, cutoff=0.6)
            problems.append(f"data.columns.{key}: unknown canonical name"
                            + (f" (did you mean '{close[0]}'?)" if close else "")
                            + f"; canonical names are {', '.join(CANONICAL + LONG_ONLY)} "
                            "(map aspects with data.aspect_columns)")
    return problems


def _map_canonical(cfg: DataConfig, keys: list[str], shape: str,
                   problems: list[str]) -> dict[str, str]:
    """canonical name -> column: the ``data.columns`` entry, else a column of a default name."""
    have = set(keys)
    wanted = CANONICAL + (LONG_ONLY if shape == "long" else ())
    cols: dict[str, str] = {}
    for key in wanted:
        if key in cfg.columns:
            col = cfg.columns[key]
            if col in have:
                cols[key] = col
            else:
                problems.append(f"data.columns.{key}: column '{col}' is not in the file"
                                + _closest(col, keys))
            continue
        col = next((n for n in DEFAULT_NAMES[key] if n in have), None)
        if col is not None:
            cols[key] = col
        elif key in ("input", "response") or (shape == "long" and key in LONG_ONLY):
            names = " or ".join(f"'{n}'" for n in DEFAULT_NAMES[key])
            problems.append(f"data.columns.{key}: no column is mapped to '{key}' and none is "
                            f"named {names}; add data.columns.{key}=<your column>")
    return cols


def _mapped_once(cols: dict[str, str], problems: list[str]) -> dict[str, str]:
    """column -> the (first) canonical name mapped to it; a column mapped twice is a problem."""
    used: dict[str, str] = {}
    for key, col in cols.items():
        if col in used:
            problems.append(f"column '{col}' is mapped twice (data.columns.{used[col]} and "
                            f"data.columns.{key})")
        used.setdefault(col, key)
    return used


def _map_aspect_columns(cfg: DataConfig, keys: list[str], used: dict[str, str],
                        problems: list[str]) -> dict[str, str]:
    """Wide shape: aspect -> column (``data.aspect_columns``, columns named like an aspect)."""
    have = set(keys)
    aspect_columns: dict[str, str] = {}
    for a, col in cfg.aspect_columns.items():
        if col in have:
            aspect_columns[a] = col
        else:
            problems.append(f"data.aspect_columns.{a}: column '{col}' is not in the file"
                            + _closest(col, keys))
    for a in cfg.aspects:
        if a in cfg.aspect_columns:
            continue
        if a in have:
            aspect_columns[a] = a
        else:
            problems.append(f"data.aspects: '{a}' is not a column of the file"
                            + _closest(a, keys) + f" and has no data.aspect_columns.{a} "
                            "entry")
    if not cfg.aspect_columns and not cfg.aspects:
        problems.append("no aspect columns: list them in data.aspects (columns of that "
                        "name) or map them with data.aspect_columns (aspect: column)")
    if cfg.aspects:  # the listed aspects, in their order
        aspect_columns = {a: aspect_columns[a] for a in cfg.aspects if a in aspect_columns}
    for a, col in aspect_columns.items():
        if col in used:
            problems.append(f"column '{col}' is both data.columns.{used[col]} and the "
                            f"rating of aspect '{a}'")
    for key in cfg.scales:
        if key != "overall" and key not in aspect_columns and key not in cfg.aspect_columns \
                and key not in cfg.aspects:
            problems.append(f"data.scales.{key}: not an aspect of data.aspects / "
                            "data.aspect_columns, nor 'overall'")
    return aspect_columns


def _mapping_error(path: str, shape: str, keys: list[str], problems: list[str]) -> InputError:
    """The one error listing every mapping problem, and the file's columns."""
    shown_keys = ", ".join(keys[:40]) + (" ..." if len(keys) > 40 else "")
    listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    return InputError(path, f"{len(problems)} problem{'s' if len(problems) > 1 else ''} "
                      f"with the generic source's config ({shape} shape): {listed}. "
                      f"Columns in the file: {shown_keys}", field="data.columns",
                      fix="correct them all (`pdselect validate` re-checks in seconds), or "
                      "let `pdselect init --data FILE` write a config for this file")


def _id(b: TableBuilder, rec: dict, col: str, file: str, line: int, what: str) -> str | None:
    """An id column's value as a string (numbers allowed), or None after rejecting it."""
    value = rec[col]
    if isinstance(value, (dict, list, bool)) or value is None or not str(value).strip():
        b.reject(f"{what} is not an id", file, line, rec, field=col,
                 expected="a string or integer id", value=shown(value))
        return None
    return str(value)


def _input_id(b: TableBuilder, rec: dict, cols: dict, text: str | None, file: str,
              line: int) -> str | None:
    """The mapped id column as a string (numbers allowed), else sha1(input text)."""
    if "input_id" not in cols:
        return short_hash(text) if text is not None else None
    return _id(b, rec, cols["input_id"], file, line, "input_id")


def read_generic(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg)
    m = resolve_mapping(cfg, peek_columns(path, cfg), path)
    scales = {k: (float(v[0]), float(v[1])) for k, v in cfg.scales.items()}
    if m.shape == "long":
        table = _read_long(cfg, path, m, scales, rejects)
    else:
        table = _read_wide(cfg, path, m, scales, rejects)
    for a in table.aspects + (["overall"] if table.has_overall else []):
        if a not in table.scales:
            col = table.df[a]
            table.scales[a] = (float(col.min()), float(col.max()))
            log.warning("generic: no scale for %r; using the observed range %s (set "
                        "data.scales.%s to range-check it)", a, table.scales[a], a)
    return table


def _read_wide(cfg: DataConfig, path: str, m: Mapping, scales: dict,
               rejects: RejectLog) -> RatedTable:
    cols = m.cols
    aspects = list(m.aspect_columns)
    has_overall = "overall" in cols
    b = TableBuilder(source="generic", aspects=aspects, scales=scales, has_overall=has_overall,
                     rejects=rejects, strict=cfg.strict)
    b.repeats = {}  # a response text rated again (per-rater rows) is averaged (data/repeats.py)
    rating_cols = [m.aspect_columns[a] for a in aspects] + ([cols["overall"]] if has_overall
                                                             else [])
    required = [cols["input"], cols["response"], *rating_cols]
    required += [cols[k] for k in ("input_id", "response_id") if k in cols]
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, required, nullable=(cols["response"], *rating_cols)):
            continue
        text = b.text(rec[cols["input"]], file, line, rec, cols["input"])
        response = None if text is None else b.text(rec[cols["response"]], file, line, rec,
                                                    cols["response"], empty="empty response")
        input_id = None if response is None else _input_id(b, rec, cols, text, file, line)
        if input_id is None:  # one reject per record, for its first bad field
            continue
        rid = (short_hash(response, 8) if "response_id" not in cols
               else _id(b, rec, cols["response_id"], file, line, "response_id"))
        if rid is None:
            continue
        b.add(file, line, rec, input_id=input_id, input=text,
              response_id=f"{input_id}:{rid}", response=response,
              ratings={a: rec[m.aspect_columns[a]] for a in aspects},
              overall=rec[cols["overall"]] if has_overall else None)
    return b.finish()


def _read_long(cfg: DataConfig, path: str, m: Mapping, scales: dict,
               rejects: RejectLog) -> RatedTable:
    cols = m.cols
    b = TableBuilder(source="generic", aspects=[], scales=scales, has_overall=False,
                     rejects=rejects, strict=cfg.strict)
    required = [cols[k] for k in ("input", "response", "aspect", "rating")]
    required += [cols[k] for k in ("input_id", "response_id", "overall") if k in cols]
    nullable = tuple(cols[k] for k in ("response", "rating", "overall") if k in cols)
    groups: dict[tuple[str, str], dict] = {}
    rows_per_aspect: dict[str, int] = {}  # in order of first appearance
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, required, nullable=nullable):
            continue
        fields = _long_fields(b, rec, cols, file, line)
        if fields is None:  # one reject per record, for its first bad field
            continue
        aspect = fields[2]
        if _group_row(b, groups, cols, file, line, rec, fields):
            rows_per_aspect[aspect] = rows_per_aspect.get(aspect, 0) + 1
    b.check_schema()
    aspects = _long_aspects(cfg, path, cols, rows_per_aspect, rejects)
    from_rows = "overall" in rows_per_aspect and "overall" not in cols
    b.aspects, b.has_overall = aspects, "overall" in cols or from_rows
    _add_groups(b, groups, aspects, from_rows)
    return b.finish()


def _long_fields(b: TableBuilder, rec: dict, cols: dict, file: str,
                 line: int) -> tuple[str, str, str, str, str] | None:
    """(input, response, aspect, input_id, response id) of a record, or None after a reject."""
    text = b.text(rec[cols["input"]], file, line, rec, cols["input"])
    response = None if text is None else b.text(rec[cols["response"]], file, line, rec,
                                                cols["response"], empty="empty response")
    aspect = None if response is None else b.text(rec[cols["aspect"]], file, line, rec,
                                                  cols["aspect"], empty="empty aspect")
    input_id = None if aspect is None else _input_id(b, rec, cols, text, file, line)
    if input_id is None:
        return None
    aspect = "overall" if aspect.strip().lower() == "overall" else aspect.strip()
    rid = (short_hash(response, 8) if "response_id" not in cols
           else _id(b, rec, cols["response_id"], file, line, "response_id"))
    if rid is None:
        return None
    return text, response, aspect, input_id, rid


def _group_row(b: TableBuilder, groups: dict[tuple[str, str], dict], cols: dict, file: str,
               line: int, rec: dict, fields: tuple[str, str, str, str, str]) -> bool:
    """Add the record's rating to its response's group; False after rejecting the record."""
    text, response, aspect, input_id, rid = fields
    g = groups.get((input_id, rid))
    if g is None:
        g = groups[(input_id, rid)] = {
            "at": (file, line, rec), "input": text, "response": response, "ratings": {},
            "overall": rec[cols["overall"]] if "overall" in cols else None}
    elif g["response"] != response:
        b.reject("response_id reused with a different response text", file, line, rec,
                 field=cols["response_id"], expected="one response text per response_id",
                 value=shown(rid))
        return False
    elif "overall" in cols and not _same_number(rec[cols["overall"]], g["overall"]):
        b.reject("overall differs between the rows of one response", file, line, rec,
                 field=cols["overall"], expected="the same overall on every row of a "
                 "response", value=shown(rec[cols["overall"]]))
        return False
    # several rows rating one aspect of one response (one per rater, or the same text twice):
    # every rating is kept and averaged, the mqm source's rule for repeated ratings (issue 17)
    g["ratings"].setdefault(aspect, []).append((file, line, rec, rec[cols["rating"]]))
    return True


def _long_aspects(cfg: DataConfig, path: str, cols: dict, rows_per_aspect: dict[str, int],
                  rejects: RejectLog) -> list[str]:
    """The found aspects kept by ``data.aspects`` (the rows of the others are counted)."""
    found = [a for a in rows_per_aspect if a != "overall"]
    if not found:
        raise InputError(path, "no aspect rows found (every row was rejected, or every aspect "
                         f"value is 'overall'; rejected: {rejects.counts()})",
                         field=cols["aspect"], expected="rows naming at least two aspects",
                         fix="check data.columns.aspect / rating, and the rejects")
    aspects = select_aspects(cfg.aspects, found, path)
    unknown = [k for k in cfg.scales if k != "overall" and k not in found]
    if unknown:
        raise InputError(path, f"data.scales names aspect(s) {unknown} that no row of column "
                         f"'{cols['aspect']}' has (aspects found: {found})",
                         field="data.scales", fix="correct the names or remove those scales")
    left_out = sum(n for a, n in rows_per_aspect.items() if a not in aspects and a != "overall")
    if left_out:
        rejects.add("aspect not selected (data.aspects)", file=path, field=cols["aspect"],
                    n=left_out)
    return aspects


def _add_groups(b: TableBuilder, groups: dict[tuple[str, str], dict], aspects: list[str],
                from_rows: bool) -> None:
    """One row per grouped response, at the line of its first row; an aspect rated on several
    rows gets the mean of its valid ratings (each checked and counted on its own line)."""
    repeated = 0
    for (input_id, rid), g in groups.items():
        file, line, rec = g["at"]
        wanted = aspects + (["overall"] if from_rows else [])
        parsed = {a: _mean_rating(b, a, g["ratings"][a]) for a in wanted
                  if len(g["ratings"].get(a, ())) > 1}
        repeated += bool(parsed)
        first = {a: g["ratings"][a][0][3] for a in wanted if a in g["ratings"]}
        b.add(file, line, rec, input_id=input_id, input=g["input"],
              response_id=f"{input_id}:{rid}", response=g["response"],
              ratings={a: first.get(a) for a in aspects},
              overall=first.get("overall") if from_rows else g["overall"], parsed=parsed)
    if repeated:
        log.info("generic: %d responses rated more than once per aspect (several raters, or "
                 "one text repeated): their ratings averaged", repeated)
        b.rejects.add(AVERAGED, n=repeated, field="rating")


def _mean_rating(b: TableBuilder, aspect: str, rows: list[tuple]) -> float:
    """Mean of the valid ratings of one aspect (NaN when none is valid)."""
    xs = [b.rating(aspect, v, file, line, rec) for file, line, rec, v in rows]
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def _same_number(a, b) -> bool:
    x, y = parse_rating(a)[0], parse_rating(b)[0]
    return x == y or (x != x and y != y)  # equal, or both missing / not numbers
