"""Token-length check of the hand-off with the policy's tokenizer: how many pairs a trainer
would DROP or TRUNCATE at ``max_length``, so the delivered budget does not shrink unseen.

    check = token_check(folder_files, tok, max_length=256, chat_format="conversational")
    # {"max_length": 256, "train": {"n": 120, "n_prompt_fills_max_length": 3,
    #                                "n_truncated": 17, "max_prompt_tokens": ...}, "test": ...}

Counted as TRL 1.16's DPOTrainer tokenises (trainer/dpo_trainer.py): message lists through the
chat template (prompt with the generation prompt; prompt + completion; the completion starts
where the two agree: dpo_data.encode_pair), text as prompt and prompt + completion + EOS. TRL
then DROPS a pair whose prompt alone has >= max_length tokens (default truncation_mode
keep_start) and TRUNCATES a pair whose prompt + longer completion exceeds it. The sharegpt
layout is counted with the policy's chat template too (LLaMA-Factory applies its own
``template``, so there it is an estimate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .dpo_data import common_prefix, conversational_example, encode_pair


def _pair_lengths(row: dict, tok, chat_format: str) -> tuple[int, int]:
    """(prompt tokens, prompt + longer completion tokens) of one exported row of a message
    layout (the standard text layout is counted in batches: :func:`_standard_lengths`)."""
    ex = _as_conversation(row, chat_format)
    enc = encode_pair(tok, ex["prompt"], ex["chosen"], ex["rejected"])
    n = len(enc["prompt_ids"])
    return n, n + max(len(enc["chosen_ids"]), len(enc["rejected_ids"]))


def _as_conversation(row: dict, chat_format: str) -> dict:
    if chat_format == "conversational":
        return conversational_example(row["prompt"], row["chosen"], row["rejected"])
    if chat_format == "implicit_prompt":  # TRL's extract_prompt: the shared prefix of turns
        ch, rj = [dict(m) for m in row["chosen"]], [dict(m) for m in row["rejected"]]
        k = 0
        while k < min(len(ch), len(rj)) - 1 and ch[k] == rj[k]:
            k += 1
        return {"prompt": ch[:k], "chosen": ch[k:], "rejected": rj[k:]}
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    turns = [{"role": role.get(t["from"], "user"), "content": t["value"]}
             for t in row["conversations"]]
    return {"prompt": turns, "chosen": [{"role": "assistant", "content": row["chosen"]["value"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]["value"]}]}


def _read(path: Path) -> pd.DataFrame:
    return (pd.read_json(path, lines=True) if path.suffix == ".jsonl"
            else pd.read_parquet(path))


def _standard_lengths(df: pd.DataFrame, tok) -> np.ndarray:
    """(prompt tokens, prompt + longer completion tokens) of every text row, as TRL tokenises
    them: prompt, and prompt + completion + EOS, the completion starting where the two agree;
    three batched tokenizer calls (one call per text cost 17 s for 1,295 pairs)."""
    eos = tok.eos_token or ""
    prompts = df["prompt"].tolist()
    P = tok(prompts)["input_ids"]
    C = tok([p + c + eos for p, c in zip(prompts, df["chosen"])])["input_ids"]
    R = tok([p + r + eos for p, r in zip(prompts, df["rejected"])])["input_ids"]
    return np.array([(min(common_prefix(p, c), common_prefix(p, r)), max(len(c), len(r)))
                     for p, c, r in zip(P, C, R)], dtype=np.int64).reshape(-1, 2)


#: pairs tokenised per split at most; a larger split is checked on a seeded uniform sample and
#: its counts are estimates (a million pairs would take the tokenizer minutes)
MAX_CHECKED = 20_000


def split_check(path: Path, tok, max_length: int, chat_format: str) -> dict:
    """The counts of one exported file (estimated from a sample above MAX_CHECKED pairs)."""
    df = _read(Path(path))
    n_all = len(df)
    if n_all > MAX_CHECKED:
        rows = np.sort(np.random.default_rng(0).choice(n_all, MAX_CHECKED, replace=False))
        df = df.iloc[rows].reset_index(drop=True)
    if chat_format == "standard":
        lens = _standard_lengths(df, tok) if len(df) else np.zeros((0, 2), np.int64)
    else:
        lens = np.array([_pair_lengths(r, tok, chat_format) for r in df.to_dict("records")],
                        dtype=np.int64).reshape(-1, 2)
    p, total = lens[:, 0], lens[:, 1]
    dropped = p >= max_length
    scale = n_all / max(len(df), 1)  # 1 unless sampled
    return {"n": int(n_all), "n_checked": int(len(df)), "sampled": bool(n_all > len(df)),
            "n_prompt_fills_max_length": int(round(dropped.sum() * scale)),
            "n_truncated": int(round(((total > max_length) & ~dropped).sum() * scale)),
            "max_prompt_tokens": int(p.max()) if len(p) else 0,
            "max_total_tokens": int(total.max()) if len(total) else 0}


def token_check(files: dict[str, Path], tok, max_length: int, chat_format: str,
                tokenizer_name: str) -> dict:
    """Per split (``files``: split -> exported file), the pairs TRL would drop or truncate."""
    out = {"tokenizer": tokenizer_name, "max_length": int(max_length),
           "rule": "TRL 1.16 DPOTrainer drops a pair whose prompt alone has >= max_length "
                   "tokens and truncates one whose prompt + longer completion exceeds it"}
    for split, f in files.items():
        out[split] = split_check(f, tok, max_length, chat_format)
    return out
