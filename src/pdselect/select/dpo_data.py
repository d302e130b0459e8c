"""The preference pairs a DPO trainer sees: read from a file, in TRL's conversational form,
tokenised, with prompts cut from the LEFT to fit ``max_length``.

    df = read_pairs(Path("runs/x/select/dpo"))           # a file or the select/dpo folder
    examples, n_cut = format_pairs(df, tok, max_length=512)

Shared by ``align`` (training), ``implicit_reward`` (held-out evaluation) and ``export`` (the
dataset handed to TRL outside pdselect), so all three see exactly the same examples.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError

REQUIRED = ("prompt", "chosen", "rejected")


# ----------------------------------------------------------------------------- data
def read_pairs(path: Path) -> pd.DataFrame:
    """Parquet or JSON Lines -> DataFrame with at least prompt/chosen/rejected. A folder (the
    select stage's ``select/dpo/``, a ``datasets`` data folder) is read as its data files in
    name order: only the ``train-*`` ones when there are any (the held-out ``test-*`` split
    is for evaluation, never for training)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist", fix="check the path")
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.suffix in (".parquet", ".pq", ".jsonl", ".json"))
        if not files:
            raise InputError(path, "folder holds no .parquet or .jsonl file",
                             fix="point at the select stage's select/dpo folder or a file")
        train = [f for f in files if f.name.startswith("train-")]
        files = train or files
        return pd.concat([read_pairs(f) for f in files], ignore_index=True)
    if path.suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=path.suffix == ".jsonl")
    else:
        raise InputError(path, f"unknown extension {path.suffix!r}",
                         expected=".parquet or .jsonl", fix="convert the file")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        layout = ("; the select stage's implicit_prompt / sharegpt layouts are for other "
                  "trainers: select.chat_format=standard or conversational for align"
                  if "prompt" in missing else "")
        raise InputError(path, f"missing columns {missing}{layout}",
                         expected="prompt, chosen, rejected",
                         fix="select/rename columns before align")
    if len(df) == 0:
        raise InputError(path, "no rows", fix="check the selection budget")
    return df


def encode_pair(tok, prompt: list[dict], chosen: list[dict], rejected: list[dict]) -> dict:
    """prompt_ids / chosen_ids / rejected_ids exactly as TRL 1.16 tokenises conversational pairs
    (template the prompt with the generation prompt, and prompt+completion; the completion
    starts where the two agree)."""
    def ids(msgs, gen=False):
        out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True,
                                      add_generation_prompt=gen)
        return list(out["input_ids"])

    p, pc, pr = ids(prompt, True), ids(prompt + chosen), ids(prompt + rejected)
    n = min(common_prefix(p, pc), common_prefix(p, pr))
    return {"prompt_ids": p[:n], "chosen_ids": pc[n:], "rejected_ids": pr[n:]}


# a line that starts a message in the readers' rendering of a message list (data/rows.to_text:
# one "role: content" line per message, a content's further lines below it)
_ROLE_LINE = re.compile(r"^(system|user|assistant|tool|developer|function|ipython): ?(.*)$")


def rendered_turns(text: str) -> list[dict] | None:
    """The messages of a text the readers rendered from a message list of two or more turns,
    or None for any other text (plain text, USR's role-less lines). The readers store every
    prompt and response as text; without this, select.chat_format=conversational flattened a
    dialogue into one user message and a rendered response turn of the user into an
    assistant message (issue 17; docs/HANDOFF.md promises kept turns and roles)."""
    if not _ROLE_LINE.match(text.split("\n", 1)[0]):
        return None
    msgs: list[dict] = []
    for line in text.split("\n"):
        m = _ROLE_LINE.match(line)
        if m:
            msgs.append({"role": m.group(1), "content": m.group(2)})
        else:
            msgs[-1]["content"] += "\n" + line
    return msgs if len(msgs) >= 2 else None


def _as_messages(x: Any, role: str) -> list[dict]:
    """A text -> one ``role`` message, or the turns it was rendered from (rendered_turns);
    a message list (list or array of {"role", "content"}, e.g. a dialogue read back from
    Parquet) -> the same turns, in order, as plain dicts."""
    if isinstance(x, str):
        return rendered_turns(x) or [{"role": role, "content": x}]
    return [dict(m) for m in x]


def conversational_example(prompt: Any, chosen: Any, rejected: Any) -> dict:
    """THE conversational form of one pair, shared by ``align`` and the select stage's export
    (``select.chat_format=conversational``), so the exported dataset is exactly what ``align``
    trains on before its length cut: prompt = a text as one user message, or a message list
    kept turn by turn; chosen / rejected = one assistant message each (or their own lists)."""
    return {"prompt": _as_messages(prompt, "user"),
            "chosen": _as_messages(chosen, "assistant"),
            "rejected": _as_messages(rejected, "assistant")}


def to_conversational(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with prompt/chosen/rejected replaced by their conversational form (other columns
    kept)."""
    rows = [conversational_example(p, c, r)
            for p, c, r in zip(df["prompt"], df["chosen"], df["rejected"])]
    out = df.copy()
    for k in REQUIRED:
        out[k] = [r[k] for r in rows]
    return out


def format_pairs(df: pd.DataFrame, tok, max_length: int) -> tuple[list[dict], int]:
    """Rows -> conversational examples (:func:`conversational_example`) with the last prompt
    message cut from the LEFT so that prompt + longer completion fits ``max_length``.
    Returns (examples, n_prompts_truncated)."""
    out, n_cut = [], 0
    extra = [c for c in ("pd",) if c in df.columns]
    for r in df.to_dict("records"):
        ex = conversational_example(r["prompt"], r["chosen"], r["rejected"])
        cut = _truncate_prompt_left(tok, ex, max_length)
        n_cut += cut
        out.append({**ex, **{c: float(r[c]) for c in extra}})
    return out, n_cut


def _truncate_prompt_left(tok, ex: dict, max_length: int) -> bool:
    """Cut the last user message's text from the left, in place; True if it was cut.
    Re-encodes after decoding (a few passes) since decode/encode round trips can shift a token."""
    enc = encode_pair(tok, ex["prompt"], ex["chosen"], ex["rejected"])
    p, c = len(enc["prompt_ids"]), max(len(enc["chosen_ids"]), len(enc["rejected_ids"]))
    if p + c <= max_length:
        return False
    last = ex["prompt"][-1]
    content = tok(last["content"], add_special_tokens=False)["input_ids"]
    overhead = p - len(content)
    min_content = min(len(content), max(1, max_length // 4))
    target = max(max_length - c, overhead + min_content)
    for _ in range(3):
        keep = max(0, target - overhead)
        if keep >= len(content):
            break
        content = content[len(content) - keep:] if keep else []
        last["content"] = tok.decode(content)
        p = len(encode_pair(tok, ex["prompt"], ex["chosen"], ex["rejected"])["prompt_ids"])
        if p <= target:
            break
        content = tok(last["content"], add_special_tokens=False)["input_ids"]
        overhead = p - len(content)
    return True


def common_prefix(a, b) -> int:
    """Length of the longest common prefix of two token-id lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
