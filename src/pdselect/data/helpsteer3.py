"""nvidia/HelpSteer3 (preference subset): pairwise records with an overall preference.

Upstream fields: ``domain``, ``language``, ``context`` (a list of chat messages ``{"role",
"content"}``, rendered one turn per line by rows.to_text), ``response1``, ``response2``,
``overall_preference`` (-3..3; negative: response1 is better, 0: about the same) and
``individual_preference`` (the annotators' own scores and reasons; not used).

HelpSteer3 itself rates no aspect: every pair has ONE overall preference, and PD needs at least
two aspects. So the per-aspect labels come from fields you add (e.g. from a judge), one
pairwise score per aspect with the same sign convention as ``overall_preference``, mapped by
``data.aspect_columns: {aspect: field}`` (scale default -3..3, or ``data.scales``). Without
them reading stops with that explanation.

Each record becomes one input with its two responses, so the aggregate stage forms exactly that
pair: stored per response as rating(response1) = 0 and rating(response2) = the record's score,
for every aspect and for the overall, so each pair's gaps are exactly the annotated scores
(sign included) and the overall stays a hidden, evaluation-only label. ``input_id`` =
sha1(context + both responses): two records with the same context are two inputs (and may fall
on both sides of the hold-out split).
"""

from __future__ import annotations

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, short_hash

FIELDS = ("context", "response1", "response2", "overall_preference")
SCALE = (-3.0, 3.0)


def no_aspects_error(path: str) -> InputError:
    return InputError(path, "HelpSteer3 records carry one overall preference per pair and no "
                      "per-aspect label, and PD needs at least two aspects",
                      field="data.aspect_columns", expected="two or more fields holding a "
                      "pairwise score per aspect (negative: response1 better, as "
                      "overall_preference)", fix="add such fields (e.g. judged per aspect) and "
                      "map them with data.aspect_columns={aspect: field}; for a single "
                      "preference per pair use a reward-margin or random selection instead "
                      "of PD")


def read_helpsteer3(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg)
    if not cfg.aspect_columns:
        raise no_aspects_error(path)
    aspects = list(cfg.aspects or cfg.aspect_columns)
    for a in aspects:
        if a not in cfg.aspect_columns:
            raise InputError(path, f"aspect {a!r} of data.aspects has no data.aspect_columns "
                             "entry", field="data.aspects", expected="aspects of "
                             "data.aspect_columns", fix="map it or remove it")
    scales = {a: tuple(cfg.scales.get(a, SCALE)) for a in aspects}
    scales["overall"] = tuple(cfg.scales.get("overall", SCALE))
    b = TableBuilder(source="helpsteer3", aspects=aspects, scales=scales, has_overall=True,
                     rejects=rejects, strict=cfg.strict)
    fields = [cfg.aspect_columns[a] for a in aspects]
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, [*FIELDS, *fields],
                         nullable=("response1", "response2", "overall_preference", *fields)):
            continue
        got = b.text_fields(file, line, rec, {"context": None, "response1": "empty response",
                                              "response2": "empty response"})
        if got is None:
            continue
        context, r1, r2 = got
        iid = short_hash("\x1f".join((context, r1, r2)))
        zeros = {a: 0.0 for a in aspects}
        if b.add(file, line, rec, input_id=iid, input=context, response_id=f"{iid}:1",
                 response=r1, ratings=zeros, overall=0.0):
            b.add(file, line, rec, input_id=iid, input=context, response_id=f"{iid}:2",
                  response=r2, ratings={a: rec[cfg.aspect_columns[a]] for a in aspects},
                  overall=rec["overall_preference"], field_prefix="")
    return b.finish()
