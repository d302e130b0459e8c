"""Aggregate: from per-response ratings to the aggregated per-aspect pair dataset D = U_k D_k.

For every input, every pair of its responses (i, j) is compared on each aspect. The aspects on
which the pair is *decided* (|rating gap| > tie_tolerance) are candidates; the pair receives
exactly ONE of them as its label (``label_strategy``), and y_w is the response that aspect
prefers. Everything else known about the pair (the overall preference, every aspect's true gap)
is kept only in hidden ``h_`` columns for evaluation (see data/schema.py).

Overall preference: the source's overall rating when it has one, else the mean of the aspect
ratings, each first rescaled to [0, 1] by its scale **[choice]** (so an aspect rated 0-1 weighs
as much as one rated 1-5).

Well-formed pairs: an input_id carrying two different input texts, or two responses with the
same (whitespace-stripped) text under one input, is rejected with its reason before pairing, so
chosen == rejected cannot happen (the readers enforce the same rules row by row).

Splits are by INPUT (never by pair), so no test response is seen in training. The conflict
level, when set, subsamples the TRAIN pairs only (METHOD.md 4).

Hold-out **[choice]** (:func:`holdout_rule`): ``test_fraction: auto`` (the default) holds 30% of
the inputs out only when the data has an overall label to evaluate against (an overall rating,
HelpSteer2's preference file, HelpSteer3, UltraFeedback, or a bundled evaluation set);
otherwise every pair stays in the selection pool. A number is used as given. The aggregate
stage's ``meta.json`` records what was done under ``holdout``.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from ..config import AggregateConfig
from ..errors import StageError
from ..data.rejects import RejectLog
from ..data.schema import PAIR_BASE, RatedTable, delta_col

log = logging.getLogger(__name__)

# reject reasons of pair building; aggregate/stream.py recognises them to decide its fallback
REUSED_INPUT_ID = "input_id reused with a different input text"
DUPLICATE_TEXT = "duplicate response text for this input"
SINGLE_RESPONSE = "input has a single response (no pair can be formed)"


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent, reproducible streams: changing one choice never shifts another's draws."""
    return np.random.default_rng([seed, stream])


def pair_id(input_id: str, a: str, b: str) -> str:
    """Stable id of an unordered response pair (independent of which one wins)."""
    lo, hi = sorted((a, b))
    return "p" + hashlib.sha1(f"{input_id}\x1f{lo}\x1f{hi}".encode()).hexdigest()[:16]


def _pair_indices(group_start: np.ndarray, group_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (i, j), i < j, of every within-group pair, vectorised per group size."""
    I, J = [], []
    for s in np.unique(group_size):
        if s < 2:
            continue
        starts = group_start[group_size == s]
        a, b = np.triu_indices(s, k=1)
        I.append((starts[:, None] + a[None, :]).ravel())
        J.append((starts[:, None] + b[None, :]).ravel())
    if not I:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(I), np.concatenate(J)


class PairDraws:
    """The random streams (and the ``balanced`` strategy's running counts) of pair building.

    One instance carried across chunks of inputs, taken in the order :func:`build_pairs`
    enumerates pairs, consumes each stream exactly as one call on the whole table does
    (Generator.random fills doubles sequentially), so chunked and one-shot pairs are equal."""

    def __init__(self, seed: int):
        self.label, self.cap = _rng(seed, 1), _rng(seed, 3)
        self.counts: np.ndarray | None = None


def _assign_labels(delta: np.ndarray, decided: np.ndarray, scale: np.ndarray, strategy: str,
                   rng: np.random.Generator, counts: np.ndarray | None = None) -> np.ndarray:
    """Index of the ONE labelling aspect per pair, among its decided aspects (``counts``: the
    balanced strategy's label counts so far, updated in place)."""
    P, K = delta.shape
    if strategy == "uniform":
        u = rng.random((P, K))
        return np.where(decided, u, -1.0).argmax(axis=1)
    if strategy == "max_margin":
        return np.where(decided, np.abs(delta) / scale[None, :], -1.0).argmax(axis=1)
    if strategy == "balanced":
        counts = np.zeros(K, np.int64) if counts is None else counts
        label = np.empty(P, np.int64)
        tiebreak = rng.random((P, K))
        for p in range(P):  # sequential by nature: each choice depends on the counts so far
            cand = np.flatnonzero(decided[p])
            best = cand[np.lexsort((tiebreak[p, cand], counts[cand]))[0]]
            label[p] = best
            counts[best] += 1
        return label
    raise ValueError(f"unknown label_strategy {strategy!r}")


def _overall(rated: RatedTable, df: pd.DataFrame) -> np.ndarray:
    """Overall rating of every row of ``df`` (rows of ``rated``, in any order)."""
    if rated.has_overall and "overall" in df.columns:
        return df["overall"].to_numpy(np.float64)
    cols = []
    for a in rated.aspects:
        lo, hi = rated.scales.get(a, (np.nanmin(df[a]), np.nanmax(df[a])))
        cols.append((df[a].to_numpy(np.float64) - lo) / ((hi - lo) or 1.0))
    with np.errstate(all="ignore"):
        return np.nanmean(np.stack(cols, axis=1), axis=1)


def build_pairs(rated: RatedTable, cfg: AggregateConfig, seed: int,
                rejects: RejectLog, draws: PairDraws | None = None) -> pd.DataFrame:
    """All same-input pairs with one aspect label each (no split, no conflict subsampling).

    ``draws``: the random streams to continue (aggregate/stream.py passes one across chunks
    of whole inputs); by default fresh streams from ``seed``."""
    draws = PairDraws(seed) if draws is None else draws
    df = rated.df.sort_values(["input_id", "response_id"], kind="mergesort").reset_index(drop=True)
    df = _well_formed(df, rejects)
    aspects = list(rated.aspects)
    I, J = _candidate_pairs(df, cfg, draws, rejects)
    R = df[aspects].to_numpy(np.float64)
    delta = R[I] - R[J]                                    # (P, K), gap of i over j
    decided = np.abs(np.nan_to_num(delta)) > cfg.tie_tolerance
    ids = df["response_id"].astype(str).to_numpy()
    input_ids = df["input_id"].astype(str).to_numpy()
    I, J, delta, decided = _drop_tied(I, J, delta, decided, ids, input_ids, rejects)
    k = _label_pairs(rated, aspects, cfg, draws, delta, decided)
    i_wins = delta[np.arange(len(k)), k] > 0
    W = np.where(i_wins, I, J)                             # y_w row
    L = np.where(i_wins, J, I)                             # y_l row
    overall = _overall(rated, df)
    out = _pair_frame(df, aspects, W, L, k, ids, input_ids)
    _add_hidden(out, overall, R, W, L, aspects, cfg.tie_tolerance)
    return out


def _candidate_pairs(df: pd.DataFrame, cfg: AggregateConfig, draws: PairDraws,
                     rejects: RejectLog) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (i, j) of every same-input pair of ``df`` (sorted by input), capped per
    input by ``max_pairs_per_input``; single-response inputs are counted as rejects."""
    sizes = df.groupby("input_id", sort=False).size()
    for iid in sizes.index[sizes.to_numpy() < 2]:
        rejects.add(SINGLE_RESPONSE, field="input_id",
                    record={"input_id": iid})
    starts = np.r_[0, np.cumsum(sizes.to_numpy())[:-1]]
    I, J = _pair_indices(starts, sizes.to_numpy())
    if cfg.max_pairs_per_input is not None:
        keep = _cap_per_input(df["input_id"].to_numpy()[I], cfg.max_pairs_per_input, draws.cap)
        if (~keep).sum():
            rejects.add(f"over max_pairs_per_input={cfg.max_pairs_per_input} (seeded sample)",
                        n=int((~keep).sum()))
        I, J = I[keep], J[keep]
    return I, J


def _drop_tied(I: np.ndarray, J: np.ndarray, delta: np.ndarray, decided: np.ndarray,
               ids: np.ndarray, input_ids: np.ndarray, rejects: RejectLog):
    """(I, J, delta, decided) without the pairs no aspect decides (each counted as a reject)."""
    tied = ~decided.any(axis=1)
    if tied.any():
        for p in np.flatnonzero(tied):
            rejects.add("pair tied (or unrated) on every aspect: no aspect label possible",
                        record={"input_id": input_ids[I[p]], "a": ids[I[p]], "b": ids[J[p]]})
        I, J, delta, decided = I[~tied], J[~tied], delta[~tied], decided[~tied]
    return I, J, delta, decided


def _label_pairs(rated: RatedTable, aspects: list[str], cfg: AggregateConfig, draws: PairDraws,
                 delta: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """Index of each pair's labelling aspect, gaps measured in units of each aspect's scale."""
    scale = np.array([rated.scales[a][1] - rated.scales[a][0] if a in rated.scales else 1.0
                      for a in aspects], dtype=np.float64)
    if cfg.label_strategy == "balanced" and draws.counts is None:
        draws.counts = np.zeros(len(aspects), np.int64)
    return _assign_labels(delta, decided, np.where(scale > 0, scale, 1.0), cfg.label_strategy,
                          draws.label, draws.counts)


def _pair_frame(df: pd.DataFrame, aspects: list[str], W: np.ndarray, L: np.ndarray,
                k: np.ndarray, ids: np.ndarray, input_ids: np.ndarray) -> pd.DataFrame:
    """The public pair table: winner rows ``W`` over loser rows ``L``, labelled by aspect ``k``."""
    text = df["response"].astype(str).to_numpy()
    inputs = df["input"].astype(str).to_numpy()
    # lengths per response, then indexed: `np.char.str_len(text[W].astype(str))` made a
    # fixed-width array of n_pairs x the LONGEST text (one 50 KB response: 4.9 GB, issue 17)
    lengths = df["response"].astype(str).str.len().to_numpy(np.int64)
    return pd.DataFrame({
        "pair_id": [pair_id(input_ids[w], ids[w], ids[l]) for w, l in zip(W, L)],
        "input_id": input_ids[W], "input": inputs[W],
        "chosen": text[W], "rejected": text[L],
        "aspect": np.asarray(aspects, dtype=object)[k], "split": "train",
        "chosen_id": ids[W], "rejected_id": ids[L],
        "len_chosen": lengths[W], "len_rejected": lengths[L],
    })


def _add_hidden(out: pd.DataFrame, overall: np.ndarray, R: np.ndarray, W: np.ndarray,
                L: np.ndarray, aspects: list[str], tie_tolerance: float) -> None:
    """The evaluation-only columns: the overall gap, whether it agrees, every aspect's gap."""
    od = overall[W] - overall[L]
    out["h_overall_delta"] = od
    out["h_agrees_overall"] = np.where(np.isnan(od) | (np.abs(od) <= tie_tolerance), np.nan,
                                       (od > 0).astype(np.float64))
    for c, a in enumerate(aspects):
        out[delta_col(a)] = R[W, c] - R[L, c]


def _well_formed(df: pd.DataFrame, rejects: RejectLog) -> pd.DataFrame:
    """Rows that can be paired: one input text per input_id, distinct response texts per input.

    The readers already enforce both; a RatedTable built another way gets the same rules here
    (first row by response_id kept, the rest counted), so chosen == rejected is impossible."""
    first_input = df.groupby("input_id", sort=False)["input"].transform("first")
    other_input = (df["input"] != first_input).to_numpy()
    dup_text = np.zeros(len(df), bool)
    kept = df[~other_input]
    dup_text[~other_input] = kept.assign(_t=kept["response"].astype(str).str.strip()).duplicated(
        ["input_id", "_t"]).to_numpy()
    for mask, reason in ((other_input, REUSED_INPUT_ID), (dup_text, DUPLICATE_TEXT)):
        for rid, iid in zip(df["response_id"][mask], df["input_id"][mask]):
            rejects.add(reason, field="input_id" if mask is other_input else "response",
                        record={"input_id": iid, "response_id": rid})
    bad = other_input | dup_text
    return df[~bad].reset_index(drop=True) if bad.any() else df


def _cap_per_input(input_ids: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(input_ids))
    rank = pd.DataFrame({"g": input_ids, "u": u}).groupby("g")["u"].rank(method="first")
    return rank.to_numpy() <= cap


AUTO_TEST_FRACTION = 0.3
# bundled evaluation sets: their overall (or, for SummEval-OP, the mean of the rescaled aspects,
# the benchmark's own protocol) is what the paper evaluates against
EVAL_SOURCES = {"usr_topical_chat", "usr_persona_chat", "summeval_op", "mqm_ted_zhen",
                "mqm_ted_ende"}


def holdout_rule(cfg: AggregateConfig, has_overall: bool, source: str) -> tuple[float, str]:
    """(share of inputs held out, the sentence the report shows) for ``cfg.test_fraction``."""
    tf = cfg.test_fraction
    if tf != "auto":
        tf = float(tf)
        if tf > 0:
            return tf, (f"{tf:.0%} of inputs held out for evaluation "
                        f"(aggregate.test_fraction={tf:g})")
        return 0.0, ("none: every input's pairs are in the selection pool "
                     "(aggregate.test_fraction=0)")
    if has_overall or source in EVAL_SOURCES:
        why = ("the data has an overall label" if has_overall else
               f"{source} is a bundled evaluation set")
        return AUTO_TEST_FRACTION, (f"{AUTO_TEST_FRACTION:.0%} of inputs held out for "
                                    f"evaluation (aggregate.test_fraction=auto: {why})")
    return 0.0, ("none: every input's pairs are in the selection pool (aggregate.test_fraction="
                 "auto: the data has no overall label to evaluate against; set "
                 "aggregate.test_fraction=0.3 to hold inputs out anyway)")


def split_by_input(pairs: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Mark whole inputs as test: ceil(test_fraction * n_inputs), seeded."""
    inputs = np.array(sorted(pairs["input_id"].unique()), dtype=object)  # not fixed-width
    n_test = int(np.ceil(test_fraction * len(inputs))) if test_fraction > 0 else 0
    test = set(_rng(seed, 2).permutation(inputs)[:n_test].tolist())
    pairs = pairs.copy()
    pairs["split"] = np.where(pairs["input_id"].isin(test), "test", "train")
    return pairs


def apply_conflict_level(pairs: pd.DataFrame, level: float, seed: int,
                         rejects: RejectLog) -> pd.DataFrame:
    """Subsample TRAIN pairs so that conflicts / (conflicts + agreements) == level.

    Only one side shrinks: conflicts when the natural rate is above the target, agreeing pairs
    when below. Pairs whose overall preference is tied are kept (they count on neither side).
    """
    if "h_agrees_overall" not in pairs.columns or pairs["h_agrees_overall"].isna().all():
        raise StageError("aggregate.conflict_level needs an overall preference, and this data "
                         "has none. Fix: set aggregate.conflict_level=null, or use a source with "
                         "overall ratings or all aspects rated.")
    train = (pairs["split"] == "train").to_numpy()
    ag = pairs["h_agrees_overall"].to_numpy()
    conf_idx = np.flatnonzero(train & (ag == 0))
    agree_idx = np.flatnonzero(train & (ag == 1))
    c, a = len(conf_idx), len(agree_idx)
    rng = _rng(seed, 4)
    drop = np.zeros(0, np.int64)
    if c + a and c / (c + a) > level:
        keep_c = int(round(level * a / (1 - level)))
        drop = rng.choice(conf_idx, size=c - keep_c, replace=False)
        reason = f"conflict-level subsampling to {level:.0%}: conflicting train pair dropped"
    elif c + a and c / (c + a) < level:
        keep_a = int(round(c * (1 - level) / level)) if level > 0 else a
        drop = rng.choice(agree_idx, size=a - keep_a, replace=False)
        reason = f"conflict-level subsampling to {level:.0%}: agreeing train pair dropped"
    if len(drop):
        rejects.add(reason, n=len(drop), pair_ids=pairs["pair_id"].to_numpy()[np.sort(drop)].tolist())
        log.info("conflict level %.0f%%: dropped %d train pairs", 100 * level, len(drop))
    keep = np.ones(len(pairs), bool)
    keep[drop] = False
    return pairs[keep].reset_index(drop=True)


def check_aspect_counts(pairs: pd.DataFrame, aspects: list[str], min_pairs: int) -> None:
    counts = pairs[pairs["split"] == "train"]["aspect"].value_counts()
    few = {a: int(counts.get(a, 0)) for a in aspects if counts.get(a, 0) < min_pairs}
    if few:
        raise StageError(
            f"aspect(s) with too few train pairs to train a proxy reward model: {few} "
            f"(need >= {min_pairs}). Fix: drop them with data.aspects=[...], lower "
            f"aggregate.min_pairs_per_aspect, or add data.")


def aggregate(rated: RatedTable, cfg: AggregateConfig, seed: int,
              rejects: RejectLog) -> pd.DataFrame:
    """The full aggregate stage: pairs, labels, split by input, optional conflict level."""
    pairs = build_pairs(rated, cfg, seed, rejects)
    if pairs.empty:
        raise StageError("no response pair could be formed (every input has one response, or "
                         "every pair is tied). Check the input data and data.aspects.")
    pairs = split_by_input(pairs, holdout_rule(cfg, rated.has_overall, rated.source)[0], seed)
    if cfg.conflict_level is not None:
        pairs = apply_conflict_level(pairs, cfg.conflict_level, seed, rejects)
    # every rated aspect needs its proxy model, so one with 0 or too few pairs is an error
    check_aspect_counts(pairs, list(rated.aspects), cfg.min_pairs_per_aspect)
    return pairs[PAIR_BASE + [c for c in pairs.columns if c not in PAIR_BASE]]


def from_pairs_input(df: pd.DataFrame, cfg: AggregateConfig, seed: int,
                     rejects: RejectLog) -> pd.DataFrame:
    """Already-paired per-aspect data: only the split and the length columns are added.

    No overall preference is known, so there are no hidden columns and no conflict metrics.
    """
    if cfg.conflict_level is not None:
        raise StageError("aggregate.conflict_level needs overall ratings, which paired input "
                         "does not have. Fix: set aggregate.conflict_level=null.")
    out = df.copy()
    same = out["chosen"].str.strip() == out["rejected"].str.strip()
    for pid in out.loc[same, "pair_id"]:
        rejects.add("chosen and rejected are identical", record={"pair_id": pid})
    out = out[~same].reset_index(drop=True)
    out["chosen_id"] = out["pair_id"] + ":w"
    out["rejected_id"] = out["pair_id"] + ":l"
    out["len_chosen"] = out["chosen"].str.len()
    out["len_rejected"] = out["rejected"].str.len()
    out["split"] = "train"
    out = split_by_input(out, holdout_rule(cfg, False, "pairs")[0], seed)
    check_aspect_counts(out, sorted(out["aspect"].unique()), cfg.min_pairs_per_aspect)
    return out[PAIR_BASE]
