"""Sniffing a data file for ``pdselect init``: its format, schema or shape, columns and scales.

    s = sniff("my_ratings.csv")      # -> Sniffed(source, shape, columns, mapping, scales, notes)

What is sniffed (:func:`sniff`, reading the records once, at most :data:`SCAN` of them):
  * the format (what the readers accept: JSON/JSONL/CSV/TSV, compressed, Parquet) and the
    columns, each classified as text, chat (message lists), numeric, or other;
  * a known schema: UltraFeedback, HelpSteer2 (ratings; its preference file alone is an
    error naming the fix), HelpSteer3, per-aspect pairs (``prompt, chosen, rejected,
    aspect``), a WMT MQM table; a binarized set (``prompt, chosen, rejected`` and no aspect)
    is an error: PD needs at least two aspects;
  * otherwise a generic table: its shape (long when a short-valued text column such as
    ``aspect`` names the aspect of each row and one numeric column holds the rating; else
    wide), the input / response / id columns (by name, else by how often values repeat: inputs
    repeat across their responses, responses do not), the aspects (numeric columns that are
    neither ids nor the overall), whether an overall exists (a numeric column whose name
    contains "overall"), and each scale: the observed min-max widened to the smallest common
    integer scale that holds it ([0, 1], [1, 3], [0, 4], [1, 5], [0, 5], [1, 7], [0, 10],
    [1, 10], [0, 100], [1, 100]; else the observed range rounded outwards).

The column statistics (:class:`Column`, :class:`Sniffed`, :func:`guess_scale`) and the guessing
of a generic table live in :mod:`sniff_generic` (re-exported here); ``pdselect.init_config``
renders the config from a :class:`Sniffed` and validates it.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .formats import file_format
from .helpsteer2 import ASPECTS as HS2_ASPECTS
from .helpsteer2 import PREFERENCE_FIELDS
from .helpsteer3 import FIELDS as HS3_FIELDS
from .helpsteer3 import no_aspects_error
from .loading import iter_records
from .pairs import binarized_error
from .sniff_generic import (ASPECT_COLUMN_NAMES, ID_PATTERN, INPUT_ID_NAMES,  # noqa: F401
                            INPUT_NAMES, RATING_NAMES, RESPONSE_ID_NAMES, RESPONSE_NAMES,
                            SCALES, Column, Sniffed, _aspect_name, _generic, fmt_num,
                            guess_scale)

SCAN = 200_000  # records read for the column statistics (min / max over all of them)
SAMPLE = 2_000  # records whose values are classified and counted for repeats


def _format_of(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and file_format(f))
        kinds = sorted({"".join(x for x in file_format(f) if x) for f in files})
        return f"folder of {len(files)} file(s): {', '.join(kinds)}"
    kind = file_format(p)
    if kind is None:
        return "Hugging Face dataset id" if not p.exists() else "unknown"
    return kind[0] + (f" ({kind[1][1:]}-compressed)" if kind[1] else "")


def sniff(path: str, cfg: DataConfig | None = None) -> Sniffed:
    """Read up to :data:`SCAN` records of ``path`` and guess how pdselect should read them."""
    cfg = cfg or DataConfig(source="generic", path=str(path))
    cfg = dataclasses.replace(cfg, path=str(path), strict=False, max_rows=None)
    if _is_mqm(path):
        return Sniffed(path=str(path), fmt=_format_of(path), n_records=0, columns={},
                       source="mqm", notes=["a WMT MQM table (system, source, target, "
                                            "category, severity): source mqm"])
    columns: dict[str, Column] = {}
    n = 0
    records = iter_records(str(path), cfg, RejectLog("sniff"))
    try:
        for n, (_, _, rec) in enumerate(itertools.islice(records, SCAN), 1):
            for k, v in rec.items():
                col = columns.get(str(k))
                if col is None:
                    col = columns[str(k)] = Column(str(k))
                col.see(v, n <= SAMPLE)
    finally:
        records.close()
    s = Sniffed(path=str(path), fmt=_format_of(path), n_records=n, columns=columns)
    _known_schema(s) or _generic(s)
    return s


def _is_mqm(path: str) -> bool:
    p = Path(path)
    name = p.name.lower()
    if not (name.endswith((".tsv", ".tsv.gz", ".tar.gz", ".tgz", ".tar")) and p.is_file()):
        return False
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "mqm" in name
    import gzip

    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(p, "rt", encoding="utf-8", errors="replace") as f:
            header = set(f.readline().strip().split("\t"))
    except OSError:
        return False
    return {"system", "source", "target", "category", "severity"} <= header


def _known_schema(s: Sniffed) -> bool:
    keys = set(s.columns)
    if {"instruction", "completions"} <= keys:
        s.source, s.overall = "ultrafeedback", True
        s.notes.append("UltraFeedback schema (instruction, completions with per-aspect "
                       "ratings): source ultrafeedback; overall = overall_score")
        return True
    if set(PREFERENCE_FIELDS) <= keys and "response" not in keys:
        raise InputError(s.path, "is HelpSteer2's preference file (prompt, response_1, "
                         "response_2, preference_strength): it holds the overall preference of "
                         "each pair but no per-aspect ratings", field="data.path",
                         fix="run `pdselect init --data <the ratings file, train.jsonl.gz>` "
                         "and add data.preference_path: <this file> to the config (the pairs' "
                         "hidden overall label)")
    if {"prompt", "response", *HS2_ASPECTS} <= keys:
        s.source = "helpsteer2"
        s.notes.append("HelpSteer2 schema (prompt, response, five 0-4 ratings): source "
                       "helpsteer2; no overall unless you add its preference file as "
                       "data.preference_path")
        return True
    if set(HS3_FIELDS) <= keys:
        s.source, s.overall = "helpsteer3", True
        skip = {"overall_preference", "individual_preference", "domain", "language"}
        cand = [c for c in s.columns.values() if c.kind == "numeric" and c.name not in skip
                and not ID_PATTERN.search(c.name)]
        if len(cand) < 2:
            raise no_aspects_error(s.path)
        for c in cand:
            s.aspect_columns[_aspect_name(c.name)] = c.name
            s.scales[_aspect_name(c.name)] = guess_scale(min(c.lo, -3), max(c.hi, 3))
        s.notes.append("HelpSteer3 schema (context, response1, response2, overall_preference) "
                       "with per-aspect pairwise scores: source helpsteer3")
        return True
    if {"chosen", "rejected"} <= keys:
        if "aspect" not in keys or "prompt" not in keys:
            raise binarized_error(s.path)
        aspects = [a for a in s.columns["aspect"].values if isinstance(a, str)]
        if len(aspects) < 2:
            raise InputError(s.path, f"the pairs name {len(aspects)} aspect(s) {aspects}: PD "
                             "needs at least two aspects", field="aspect",
                             fix="add pairs labelled with other aspects")
        s.source = "pairs"
        s.aspects = sorted(aspects)
        s.notes.append("per-aspect pairs (prompt, chosen, rejected, aspect): source pairs; no "
                       "overall, so no hold-out by default")
        return True
    return False
