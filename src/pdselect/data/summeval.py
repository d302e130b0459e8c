"""SummEval-OP (Siledar et al. 2024): 32 products x 8 reviews, 13 opinion summaries each,
rated 1-5 on 7 aspects (mean of 3 annotators, 2 decimals). No overall label.

One JSONL line per product: ``{"reviews": {"rev1".."rev8": text}, "summaries": {model:
{"summary": text, "dimensions": {"Fluency": .., "Coherence": .., "Relevance": ..,
"Faithfulness": .., "Aspect Coverage": .., "Sentiment Consistency": .., "Specificity": ..}}}}``.
Empty ``data.path`` reads the copy bundled with pdselect.

Input text = the reviews in key order, each as "Review <k>: <text>", blank-line separated (the
numbering lets a model refer to reviews; order is the file's). input_id = sha1(input)[:12],
response_id = f"{input_id}:{model}". Aspect names are snake_case of the upstream names.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from .rejects import RejectLog
from .schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, select_aspects, short_hash

BUNDLED = Path(__file__).resolve().parent.parent / "bundled" / "summeval_op" / "summeval-op.jsonl"
UPSTREAM = ["Fluency", "Coherence", "Relevance", "Faithfulness", "Aspect Coverage",
            "Sentiment Consistency", "Specificity"]
NAMES = {u: u.lower().replace(" ", "_") for u in UPSTREAM}
ASPECTS = list(NAMES.values())
SCALES = {a: (1.0, 5.0) for a in ASPECTS}


def build_input(reviews: dict) -> str:
    return "\n\n".join(f"Review {i}: {str(t).strip()}"
                       for i, t in enumerate(reviews.values(), 1))


def read_summeval(cfg: DataConfig, rejects: RejectLog) -> RatedTable:
    path = resolve_path(cfg, BUNDLED)
    aspects = select_aspects(cfg.aspects, ASPECTS, path)
    wanted = [u for u in UPSTREAM if NAMES[u] in aspects]
    b = TableBuilder(source="summeval_op", aspects=aspects, scales=SCALES, has_overall=False,
                     rejects=rejects, strict=cfg.strict)
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, ["reviews", "summaries"]):
            continue
        if not isinstance(rec["reviews"], dict) or not isinstance(rec["summaries"], dict):
            b.reject("reviews/summaries are not objects", file, line, rec, field="summaries",
                     expected="objects keyed by review id / model name")
            continue
        reviews = {}
        for k, t in rec["reviews"].items():
            reviews[k] = b.text(t, file, line, rec, f"reviews.{k}", name="review")
            if reviews[k] is None:
                break
        if None in reviews.values():
            continue
        text = build_input(reviews)
        input_id = short_hash(text)
        for model, s in rec["summaries"].items():
            where = f"summaries.{model}."
            if not isinstance(s, dict) or not b.require(file, line, s, ["summary", "dimensions"],
                                                        prefix="summaries.*.",
                                                        nullable=("summary",)):
                continue
            dims = s["dimensions"] if isinstance(s["dimensions"], dict) else {}
            b.add(file, line, s, input_id=input_id, input=text,
                  response_id=f"{input_id}:{model}", response=s["summary"],
                  ratings={NAMES[u]: dims.get(u) for u in wanted}, field_prefix=where)
    return b.finish()
