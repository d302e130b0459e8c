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

:func:`generate_rated` writes the other realistic large input, a RATED table (one row per
response, 4 aspects + overall, 1-5) that ``source: generic`` reads and ``pdselect run``
aggregates itself. Its texts come from a bounded pool of ``n_prototypes`` recombined inputs
(each with its 4 responses): input i reuses prototype ``i % n_prototypes`` under its own
input_id, with its own ratings. The encoder's cost is the number of unique (input, response)
texts, 4 * n_prototypes, whatever the number of pairs; a benchmark can thus keep the cold
encode within a CPU's reach while every other stage sees the full row count.
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

from ..run.artifacts import atomic_path, parquet_appender, write_json

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


def _prototypes(n: int, seed: int) -> list[tuple[str, list[str]]]:
    pools = text_pools()
    rng = np.random.default_rng([int(seed), 7])  # its own stream: the pool is fixed per seed
    return [_one_input(rng, pools) for _ in range(n)]


def rated_batch(first_input: int, n_inputs: int, protos: list, seed: int,
                aspects: list[str] = UF_ASPECTS) -> pa.Table:
    """Rows of inputs ``first_input .. first_input + n_inputs - 1`` (4 responses each): ids,
    texts (prototype ``i % len(protos)``), integer ratings 1-5 per aspect and an overall, drawn
    from ``(seed, first_input)`` so a batch is reproducible on its own."""
    rng = np.random.default_rng([int(seed), 11, int(first_input)])
    idx = np.repeat(np.arange(first_input, first_input + n_inputs), RESPONSES_PER_INPUT)
    r = np.tile(np.arange(RESPONSES_PER_INPUT), n_inputs)
    p = idx % len(protos)
    ratings = rng.integers(1, 6, (len(idx), len(aspects))).astype(np.float64)
    # overall: the aspect mean plus noise, so it mostly agrees with the aspects (conflicts exist)
    overall = np.clip(np.round(ratings.mean(1) + rng.normal(0, 0.75, len(idx))), 1, 5)
    cols = {"input_id": [f"s{seed}-i{i:09d}" for i in idx],
            "input": [protos[k][0] for k in p],
            "response_id": [f"r{j}" for j in r],
            "response": [protos[k][1][j] for k, j in zip(p, r)]}
    cols.update({a: ratings[:, c] for c, a in enumerate(aspects)})
    cols["overall"] = overall
    return pa.table(cols)


def generate_rated(n_inputs: int, path: str | Path, n_prototypes: int = 1000, seed: int = 0,
                   aspects: list[str] = UF_ASPECTS, batch_inputs: int = 20_000) -> dict:
    """One Parquet file of ``4 * n_inputs`` rated responses (``6 * n_inputs`` pairs), written
    batch by batch (memory: one batch + the prototype pool); skipped when it exists."""
    path = Path(path)
    if not path.exists():
        protos = _prototypes(n_prototypes, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        with parquet_appender(path) as out:
            for start in range(0, n_inputs, batch_inputs):
                t = rated_batch(start, min(batch_inputs, n_inputs - start), protos, seed, aspects)
                out.append(t, row_group_size=4 * batch_inputs)
    return {"n_inputs": n_inputs, "n_responses": RESPONSES_PER_INPUT * n_inputs,
            "n_pairs": n_inputs * len(PAIR_IDX), "n_prototypes": n_prototypes,
            "unique_texts": RESPONSES_PER_INPUT * min(n_prototypes, n_inputs),
            "aspects": aspects, "seed": seed}
