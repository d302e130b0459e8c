"""nvidia/HelpSteer2: one row per (prompt, response), five human ratings 0-4, no overall.

Upstream columns: ``prompt``, ``response``, ``helpfulness``, ``correctness``, ``coherence``,
``complexity``, ``verbosity`` (int32). Responses come in twos per prompt; the rows carry no
ids, so ``input_id`` = sha1(prompt) and ``response_id`` = input_id + sha1(response): an
identical response repeated for one prompt is a duplicate and rejected. Chat-message prompts
(lists of ``{"role", "content"}``) are rendered as text (rows.to_text).

``helpfulness`` is HelpSteer2's own holistic-ish score but it is an *aspect* here, as in the
paper (no separate overall label exists).
"""

from __future__ import annotations

from ..config import DataConfig
from ..rejects import RejectLog
from ..schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, select_aspects, short_hash

ASPECTS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
SCALES = {a: (0.0, 4.0) for a in ASPECTS}


def read_helpsteer2(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg)
    aspects = select_aspects(cfg.aspects, ASPECTS, path)
    b = TableBuilder(source="helpsteer2", aspects=aspects, scales=SCALES, has_overall=False,
                     rejects=rejects, strict=cfg.strict)
    for file, line, rec in iter_records(path, cfg, rejects):
        # An aspect *key* absent is a schema problem (renamed column); a null value is a
        # missing rating, and a null response is rejected as an empty response.
        if not b.require(file, line, rec, ["prompt", "response", *aspects],
                         nullable=("response", *aspects)):
            continue
        prompt = b.text(rec["prompt"], file, line, rec, "prompt")
        response = None if prompt is None else b.text(rec["response"], file, line, rec,
                                                      "response", empty="empty response")
        if response is None:  # one reject per record, for its first bad field
            continue
        input_id = short_hash(prompt)
        b.add(file, line, rec, input_id=input_id, input=prompt,
              response_id=f"{input_id}:{short_hash(response, 8)}", response=response,
              ratings={a: rec[a] for a in aspects})
    return b.finish()
