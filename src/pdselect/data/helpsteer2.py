"""nvidia/HelpSteer2: one row per (prompt, response), five human ratings 0-4; optionally its
pairwise preference file as the hidden overall label.

Upstream columns: ``prompt``, ``response``, ``helpfulness``, ``correctness``, ``coherence``,
``complexity``, ``verbosity`` (int32); ``train.jsonl.gz`` / ``validation.jsonl.gz``. Responses
come in twos per prompt; the rows carry no ids, so ``input_id`` = sha1(prompt) and
``response_id`` = input_id + sha1(response): an identical response repeated for one prompt is a
duplicate and rejected. Chat-message prompts (lists of ``{"role", "content"}``) are rendered as
text (rows.to_text).

``helpfulness`` is HelpSteer2's own holistic-ish score but it is an *aspect* here, as in the
paper. Without the preference file there is no overall label: the overall preference used for
evaluation is then the mean of the rescaled aspects, and no inputs are held out by default.

Preference file (``preference/preference.jsonl.gz``; ``data.preference_path``, or records of
its schema found under ``data.path``): ``prompt``, ``response_1``, ``response_2``,
``preference_strength`` in -3..3 (negative: response_1 is better; 0: about the same). It is the
hidden overall label of the pair of rated responses it names (matched by prompt and both
response texts). Stored per response, since HelpSteer2 has two responses per prompt:
overall(response_1) = 0, overall(response_2) = preference_strength, so the pair's overall gap
is exactly the annotated strength (sign included). A prompt whose responses are not exactly one
annotated pair keeps no overall (NaN, counted); unmatched preference records are only logged.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from ..config import DataConfig
from ..errors import InputError
from .rejects import RejectLog
from .schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, parse_rating, select_aspects, short_hash, to_text

log = logging.getLogger(__name__)
ASPECTS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
SCALES = {a: (0.0, 4.0) for a in ASPECTS}
PREFERENCE_FIELDS = ("prompt", "response_1", "response_2", "preference_strength")


def is_preference_record(rec: dict) -> bool:
    return all(k in rec for k in PREFERENCE_FIELDS) and "response" not in rec


def read_helpsteer2(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg)
    aspects = select_aspects(cfg.aspects, ASPECTS, path)
    # spill=False: the preference file is matched on the response texts after finish()
    b = TableBuilder(source="helpsteer2", aspects=aspects, scales=SCALES, has_overall=False,
                     rejects=rejects, strict=cfg.strict, spill=False)
    prefs: list[tuple[str, int, dict]] = []
    for file, line, rec in iter_records(path, cfg, rejects):
        if is_preference_record(rec):  # the preference file inside a downloaded repo folder
            prefs.append((file, line, rec))
            continue
        # An aspect *key* absent is a schema problem (renamed column); a null value is a
        # missing rating, and a null response is rejected as an empty response.
        if not b.require(file, line, rec, ["prompt", "response", *aspects],
                         nullable=("response", *aspects)):
            continue
        got = b.text_fields(file, line, rec, {"prompt": None, "response": "empty response"})
        if got is None:
            continue
        prompt, response = got
        input_id = short_hash(prompt)
        b.add(file, line, rec, input_id=input_id, input=prompt,
              response_id=f"{input_id}:{short_hash(response, 8)}", response=response,
              ratings={a: rec[a] for a in aspects})
    if cfg.preference_path:
        pref_cfg = dataclasses.replace(cfg, path=cfg.preference_path, max_rows=None)
        prefs += list(iter_records(cfg.preference_path, pref_cfg, rejects))
    if prefs and not b.rows and not cfg.preference_path:
        raise InputError(path, "holds HelpSteer2's preference records (prompt, response_1, "
                         "response_2, preference_strength) but no per-aspect ratings",
                         field="data.path", expected="the ratings file (train.jsonl.gz: "
                         "prompt, response, helpfulness, ...)", fix="set data.path to the "
                         "ratings and data.preference_path to this preference file")
    table = b.finish()
    if prefs:
        _attach_preferences(table, prefs, rejects)
    return table


def _attach_preferences(table: RatedTable, prefs: list, rejects: RejectLog) -> None:
    """Set ``overall`` from the preference records (see the module docstring)."""
    df = table.df
    where = {(iid, r.strip()): i for i, (iid, r) in enumerate(zip(df["input_id"],
                                                                    df["response"]))}
    overall = np.full(len(df), np.nan)
    labelled: dict[str, int] = {}  # input_id -> preference records matched
    unmatched = bad = 0
    for file, line, rec in prefs:
        prompt, _ = to_text(rec.get("prompt"))
        r1, _ = to_text(rec.get("response_1"))
        r2, _ = to_text(rec.get("response_2"))
        strength, problem = parse_rating(rec.get("preference_strength"))
        if problem or not -3 <= strength <= 3 or None in (prompt, r1, r2):
            rejects.add("preference record unusable (preference_strength not in -3..3, or a "
                        "text field missing)", file=file, line=line, field="preference_strength",
                        record=rec)
            bad += 1
            continue
        iid = short_hash(prompt)
        i, j = where.get((iid, r1.strip())), where.get((iid, r2.strip()))
        if i is None or j is None:
            unmatched += 1
            continue
        overall[i], overall[j] = 0.0, strength
        labelled[iid] = labelled.get(iid, 0) + 1
    n_resp = df.groupby("input_id").size()
    ambiguous = [iid for iid, n in labelled.items() if n != 1 or n_resp[iid] != 2]
    if ambiguous:  # the per-response encoding holds for exactly one pair per prompt
        mask = df["input_id"].isin(ambiguous).to_numpy()
        overall[mask] = math.nan
        rejects.add("overall label dropped: the prompt has more than one annotated pair or "
                    "more than two responses", field="preference_strength",
                    n=int(len(ambiguous)))
    if unmatched:
        log.info("helpsteer2: %d preference records name no pair of rated responses (other "
                 "split?); not used", unmatched)
    n_labelled = len(labelled) - len(ambiguous)
    if not n_labelled:
        log.warning("helpsteer2: no preference record matches a pair of rated responses: no "
                    "overall label (check that both files are of the same split)")
        return
    df["overall"] = overall
    table.has_overall = True
    table.scales["overall"] = (-3.0, 3.0)
    log.info("helpsteer2: overall preference for %d of %d prompts from the preference file",
             n_labelled, df["input_id"].nunique())
