"""Large, realistic pair sets from the bundled real texts, in bounded memory (benchmarks).

Texts are recombined from REAL sentences and dialogue turns of the bundled USR (Topical-Chat,
PersonaChat) and SummEval-OP data, so tokenisation, lengths and vocabulary look like real data
while every input is new. The shape follows UltraFeedback: 4 responses per input, 4 aspects,
all 6 response pairs per input, each pair labelled with one aspect (uniform draw), chosen /
rejected orientation random.

    summary = generate_pairs(1_000_000, "bench_data/pairs_1m", shard_size=100_000, seed=0)

Half the inputs are dialogues (2-5 real turns; responses = 2-4 real response sentences or turns), half
are review summarisation (4-8 real review sentences; responses = 2-5 real summary sentences).
Shards are generated independently from ``(seed, shard index)``: memory is one shard, and any
shard can be regenerated alone. Ratings are NOT generated (no h_ columns): these sets measure
speed, not selection quality.
"""

from __future__ import annotations

import ast
import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..run.artifacts import atomic_path, write_json

UF_ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
RESPONSES_PER_INPUT = 4
PAIR_IDX = [(a, b) for a in range(RESPONSES_PER_INPUT) for b in range(a + 1, RESPONSES_PER_INPUT)]
_SENT = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(str(text)) if len(s.strip()) > 15]


def _as_dict(v):
    return v if isinstance(v, dict) else ast.literal_eval(v)


@lru_cache(maxsize=1)
def text_pools() -> dict[str, np.ndarray]:
    """Deduplicated real text units: dialogue turns, response sentences, review sentences,
    summary sentences."""
    root = resources.files("pdselect") / "bundled"
    turns, resp, review, summ = set(), set(), set(), set()
    for name in ("topical_chat.json", "persona_chat.json"):
        for rec in json.loads((root / "usr_dialog_eval" / name).read_text()):
            turns.update(t.strip() for t in str(rec["dialog_history"]).split("\n")
                         if len(t.strip()) > 10)
            resp.update(_sentences(rec["response"]) or [str(rec["response"]).strip()])
    for line in (root / "summeval_op" / "summeval-op.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for r in _as_dict(rec["reviews"]).values():
            review.update(_sentences(r))
        for s in _as_dict(rec["summaries"]).values():
            summ.update(_sentences(s["summary"] if isinstance(s, dict) else s))
    return {k: np.array(sorted(v), dtype=object)
            for k, v in (("turns", turns), ("response", resp | turns), ("review", review),
                         ("summary", summ))}


def _join(pool: np.ndarray, rng: np.random.Generator, lo: int, hi: int, sep: str) -> str:
    return sep.join(pool[rng.integers(0, len(pool), rng.integers(lo, hi + 1))])


def _one_input(rng: np.random.Generator, pools: dict) -> tuple[str, list[str]]:
    if rng.random() < 0.5:
        inp = _join(pools["turns"], rng, 2, 5, "\n")
        spec = ("response", 2, 4)
    else:
        inp = "Summarize these reviews:\n" + _join(pools["review"], rng, 4, 8, " ")
        spec = ("summary", 2, 5)
    responses: list[str] = []
    while len(responses) < RESPONSES_PER_INPUT:  # 4 distinct responses per input
        r = _join(pools[spec[0]], rng, spec[1], spec[2], " ")
        if r not in responses:
            responses.append(r)
    return inp, responses


def generate_shard(n_pairs: int, first_input: int, seed: int, shard: int,
                   aspects: list[str] = UF_ASPECTS) -> pa.Table:
    """``n_pairs`` pairs (a multiple of 6 except for the last shard) as an Arrow table."""
    pools = text_pools()
    rng = np.random.default_rng([int(seed), int(shard)])
    cols: dict[str, list] = {c: [] for c in ("pair_id", "input_id", "input", "chosen", "rejected",
                                             "aspect", "split", "chosen_id", "rejected_id")}
    i = first_input
    while len(cols["pair_id"]) < n_pairs:
        inp, resp = _one_input(rng, pools)
        iid = f"s{seed}-i{i:09d}"
        swap = rng.random(len(PAIR_IDX)) < 0.5
        asp = rng.integers(0, len(aspects), len(PAIR_IDX))
        for j, (a, b) in enumerate(PAIR_IDX):
            if len(cols["pair_id"]) == n_pairs:
                break
            w, l = (b, a) if swap[j] else (a, b)
            cols["pair_id"].append(f"{iid}-p{a}{b}")
            cols["input_id"].append(iid)
            cols["input"].append(inp)
            cols["chosen"].append(resp[w])
            cols["rejected"].append(resp[l])
            cols["aspect"].append(aspects[asp[j]])
            cols["split"].append("train")
            cols["chosen_id"].append(f"{iid}-r{w}")
            cols["rejected_id"].append(f"{iid}-r{l}")
        i += 1
    t = pa.table(cols)
    return t.append_column("len_chosen", pc.utf8_length(t["chosen"])).append_column(
        "len_rejected", pc.utf8_length(t["rejected"]))


def generate_pairs(n_pairs: int, out_dir: str | Path, shard_size: int = 100_000, seed: int = 0,
                   aspects: list[str] = UF_ASPECTS, row_group_size: int = 16_384) -> dict:
    """Write ``out_dir/pairs-<s>.parquet`` shards (skipping ones that exist) + ``meta.json``."""
    out = Path(out_dir)
    per = len(PAIR_IDX)
    shard_size = max(per, shard_size - shard_size % per)  # whole inputs per shard
    n_shards = -(-n_pairs // shard_size)
    for s in range(n_shards):
        path = out / f"pairs-{s:05d}.parquet"
        if path.exists():
            continue
        n = min(shard_size, n_pairs - s * shard_size)
        table = generate_shard(n, s * shard_size // per, seed, s, aspects)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, row_group_size=row_group_size)
    meta = {"n_pairs": n_pairs, "n_inputs": -(-n_pairs // per), "responses_per_input":
            RESPONSES_PER_INPUT, "pairs_per_input": per, "aspects": aspects, "seed": seed,
            "shard_size": shard_size, "n_shards": n_shards,
            "sources": "bundled USR Topical-Chat/PersonaChat + SummEval-OP, recombined"}
    write_json(out / "_meta.json", meta)  # "_": Parquet readers skip it
    return meta
