"""The dataset layouts of the hand-off (``select.chat_format``), one row per pair:

    standard          prompt, chosen, rejected as text (TRL's standard preference format)
    conversational    prompt = message list, chosen / rejected = one assistant message each
    implicit_prompt   chosen / rejected = the whole conversation (prompt turns + the answer),
                      no prompt column: TRL's implicit-prompt format (``extract_prompt`` takes
                      the shared prefix of turns as the prompt)
    sharegpt          LLaMA-Factory's preference format: ``conversations`` (from/value turns,
                      human / gpt, an optional leading system turn, ending on a human turn),
                      ``chosen`` / ``rejected`` = ONE {"from": "gpt", "value": ...} object

Every layout goes through :func:`pdselect.select.dpo_data.conversational_example`, so the turns
are the ones ``pdselect align`` trains on. LLaMA-Factory skips a sharegpt example whose turns
do not alternate human / gpt (its SharegptDatasetConverter); a dialogue prompt that cannot be
made to alternate by merging consecutive turns of one speaker becomes ONE human turn with the
turns as "role: text" lines (the words kept, the speaker structure flattened).
"""

from __future__ import annotations

import pandas as pd

from .dpo_data import to_conversational

LAYOUTS = ("standard", "conversational", "implicit_prompt", "sharegpt")
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}
#: the columns each layout puts first (the pair's own columns follow)
LAYOUT_TEXT = {"standard": ["prompt", "chosen", "rejected"],
                "conversational": ["prompt", "chosen", "rejected"],
                "implicit_prompt": ["chosen", "rejected"],
                "sharegpt": ["conversations", "chosen", "rejected"]}


def apply_layout(df: pd.DataFrame, chat_format: str) -> pd.DataFrame:
    """``df`` (prompt / chosen / rejected as the pair table holds them, other columns kept
    after them) in the layout ``chat_format``."""
    if chat_format not in LAYOUTS:
        raise ValueError(f"chat_format={chat_format!r}: expected one of {LAYOUTS} "
                         "(select.chat_format)")
    if chat_format == "standard":
        return df
    conv = to_conversational(df)
    rest = [c for c in df.columns if c not in ("prompt", "chosen", "rejected")]
    if chat_format == "conversational":
        return conv
    if chat_format == "implicit_prompt":
        out = pd.DataFrame({"chosen": [p + c for p, c in zip(conv["prompt"], conv["chosen"])],
                            "rejected": [p + r for p, r in zip(conv["prompt"], conv["rejected"])]})
    else:
        out = pd.DataFrame({"conversations": [sharegpt_turns(p) for p in conv["prompt"]],
                            "chosen": [_one_answer(c) for c in conv["chosen"]],
                            "rejected": [_one_answer(r) for r in conv["rejected"]]})
    for c in rest:
        out[c] = conv[c].to_numpy()
    return out


def _one_answer(messages: list[dict]) -> dict:
    """chosen / rejected as LLaMA-Factory's single gpt object (a multi-message answer, which the
    pair table never produces, is joined into one)."""
    return {"from": "gpt", "value": "\n".join(str(m["content"]) for m in messages)}


def sharegpt_turns(prompt: list[dict]) -> list[dict]:
    """Prompt messages -> from/value turns LLaMA-Factory accepts: [system], human, gpt, ...,
    human. Consecutive turns of one speaker are merged; otherwise-invalid orders are flattened
    into one human turn (module docstring)."""
    system = [m for m in prompt[:1] if m["role"] == "system"]
    merged: list[dict] = []
    for m in prompt[len(system):]:
        role = SHAREGPT_ROLE.get(m["role"], "human")
        if merged and merged[-1]["from"] == role:
            merged[-1]["value"] += "\n" + str(m["content"])
        else:
            merged.append({"from": role, "value": str(m["content"])})
    head = [{"from": "system", "value": str(m["content"])} for m in system]
    ok = (merged and merged[0]["from"] == "human" and merged[-1]["from"] == "human"
          and all(t["from"] == ("human", "gpt")[i % 2] for i, t in enumerate(merged)))
    if ok:
        return head + merged
    text = "\n".join(f"{m['role']}: {m['content']}" for m in prompt[len(system):])
    return head + [{"from": "human", "value": text}]
