"""openbmb/UltraFeedback: one record per instruction, four rated completions each.

Upstream schema (Hugging Face ``openbmb/UltraFeedback``, train split)::

    {"source": str, "instruction": str, "models": [str],
     "completions": [{"model": str, "principle": str, "custom_system_prompt": str,
                      "response": str, "critique": str, "overall_score": float,
                      "fine-grained_score": float,
                      "annotations": {"helpfulness": {"Rating": "4", "Rationale": ...,
                                                      "Type": [...], "Rationale For Rating": ...},
                                      "honesty": {"Rating": "5", "Rationale": ...},
                                      "instruction_following": {"Rating": ..., "Rationale": ...},
                                      "truthfulness": {"Type": [...], "Rationale": ...,
                                                       "Rating": ..., "Rationale For Rating": ...}}}],
     "correct_answers": [str], "incorrect_answers": [str]}

Ratings are strings "1".."5" or "N/A" (GPT-4 declined to rate). The GitHub release wraps each
aspect's annotation in a one-element list; both shapes are accepted.

Input text = ``instruction`` only: ``custom_system_prompt`` is the per-completion generation
principle, not part of the task (the same choice as HuggingFaceH4/ultrafeedback_binarized).
Overall = ``overall_score`` (the critique score, 1-10, as fixed upstream on 2023-12-29).
"""

from __future__ import annotations

from typing import Any

from ..config import DataConfig
from .rejects import RejectLog
from .schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, select_aspects, short_hash

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
SCALES = {**{a: (1.0, 5.0) for a in ASPECTS}, "overall": (1.0, 10.0)}


def _rating(annotations: dict, aspect: str) -> Any:
    ann = annotations.get(aspect)
    if isinstance(ann, list):  # GitHub release: [{"Rating": ...}]
        ann = ann[0] if ann else None
    return ann.get("Rating") if isinstance(ann, dict) else None


def read_ultrafeedback(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg)
    aspects = select_aspects(cfg.aspects, ASPECTS, path)
    b = TableBuilder(source="ultrafeedback", aspects=aspects, scales=SCALES, has_overall=True,
                     rejects=rejects, strict=cfg.strict)
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, ["instruction", "completions"]):
            continue
        if not isinstance(rec["completions"], list):
            b.reject("completions is not a list", file, line, rec, field="completions",
                     expected="a list of completion objects")
            continue
        instruction = b.text(rec["instruction"], file, line, rec, "instruction")
        if instruction is None:
            continue
        input_id = short_hash(instruction)
        for i, comp in enumerate(rec["completions"]):
            where = f"completions[{i}]."
            if not isinstance(comp, dict):
                b.reject("completion is not an object", file, line, comp, field=where[:-1],
                         expected="a completion object")
                continue
            if not b.require(file, line, comp, ["response", "annotations"], prefix=where):
                continue
            anns = comp["annotations"] if isinstance(comp["annotations"], dict) else {}
            model = str(comp.get("model") or i)
            b.add(file, line, comp, input_id=input_id, input=instruction,
                  response_id=f"{input_id}:{model}", response=comp["response"],
                  ratings={a: _rating(anns, a) for a in aspects},
                  overall=comp.get("overall_score"), field_prefix=where)
    return b.finish()
