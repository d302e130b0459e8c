"""The USR human annotations (Mehri & Eskenazi 2020) as repackaged by ctc-gen-eval: one JSON list
per corpus, one row per candidate next turn, scores = mean over 3 annotators.

Row fields: ``model``, ``response``, ``dialog_history`` (turns joined by "\\n"), ``fact``,
``overall``, ``understandable``, ``natural``, ``maintains_context``, ``engaging``,
``uses_knowledge``. Empty ``data.path`` reads the copy bundled with pdselect.

Grouping: ``input_id`` = sha1(dialog_history)[:12]; ``response_id`` = f"{input_id}:{model}"
((context, model) is unique; (model, response) is not: generic replies repeat across contexts).

Input text = the knowledge first, then the history, one turn per line:

    Fact: <fact>                       (Topical-Chat)    |  your persona: ... (PersonaChat,
    <turn 1>                                             |  already self-labelled, kept as is)
    ...
    <latest turn>

Why fact first: the response must directly follow the latest turn (the proxy encodes
"input [SEP] response"), and proxy inputs are truncated from the LEFT, so on long contexts the
fact is what gets cut, never the turns the response answers. Turns and the response are
whitespace-stripped (the upstream text ends in " \\n" artefacts).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..config import DataConfig
from .rejects import RejectLog
from .schema import RatedTable
from .loading import iter_records, resolve_path
from .rows import TableBuilder, select_aspects, short_hash

BUNDLED = Path(__file__).resolve().parent.parent / "bundled" / "usr_dialog_eval"
FILES = {"usr_topical_chat": "topical_chat.json", "usr_persona_chat": "persona_chat.json"}
ASPECTS = ["understandable", "natural", "maintains_context", "engaging", "uses_knowledge"]
SCALES = {"understandable": (0.0, 1.0), "natural": (1.0, 3.0), "maintains_context": (1.0, 3.0),
          "engaging": (1.0, 3.0), "uses_knowledge": (0.0, 1.0), "overall": (1.0, 5.0)}


def build_input(history: str, fact: str) -> str:
    turns = [t.strip() for t in history.split("\n") if t.strip()]
    fact = fact.strip()
    if fact and not fact.lower().startswith("your persona"):
        fact = "Fact: " + fact
    return "\n".join(([fact] if fact else []) + turns)


def read_usr(cfg: DataConfig, rejects: RejectLog, *, source: str) -> RatedTable:
    path = resolve_path(cfg, BUNDLED / FILES[source])
    aspects = select_aspects(cfg.aspects, ASPECTS, path)
    b = TableBuilder(source=source, aspects=aspects, scales=SCALES, has_overall=True,
                     rejects=rejects, strict=cfg.strict)
    for file, line, rec in iter_records(path, cfg, rejects):
        if not b.require(file, line, rec, ["model", "response", "dialog_history", "fact",
                                           *aspects, "overall"],
                         nullable=("response", "fact", *aspects, "overall")):
            continue
        got = b.text_fields(file, line, rec, {"dialog_history": None, "fact": None,
                                              "response": "empty response"})
        if got is None:
            continue
        history, fact, response = got
        input_id = short_hash(history)
        b.add(file, line, rec, input_id=input_id, input=build_input(history, fact),
              response_id=f"{input_id}:{rec['model']}", response=response.strip(),
              ratings={a: rec[a] for a in aspects}, overall=rec["overall"])
    return b.finish()


read_usr_topical_chat = partial(read_usr, source="usr_topical_chat")
read_usr_persona_chat = partial(read_usr, source="usr_persona_chat")
