"""Score: cross-scoring with the per-aspect proxy models, normalisation and PD (METHOD.md 3.3-4).

The score table has one row per TRAIN pair (the selection pool), keyed by ``pair_id``:

    pair_id, aspect, gap__<a> (raw proxy gap r_a(x,y_w) - r_a(x,y_l)), norm__<a> (clipped to
    [-1, 1] by q_a), pd, margin (unified reward model gap, when trained)

Two per-shard steps are the ONLY code computing these columns: :func:`gaps_frame` (pairs ->
gap columns) and :func:`pd_frame` (gap columns + q -> norm__/pd). The streamed engine
(score/sharded.py, local or Ray) runs them per shard with q over all shards;
:func:`score_table` is the one-shard case, so the two agree by construction.

``pd_rati_table`` computes the same PD from the TRUE ratings (hidden columns): the paper's
PD-rati oracle, for evaluation only.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import StageError
from ..pd import normalise, normaliser, pd_from_gaps, preference_divergence
from ..data.schema import HIDDEN_PREFIX, delta_col

log = logging.getLogger(__name__)


def label_index(aspect_col: pd.Series, aspects: list[str]) -> np.ndarray:
    """Column index of each pair's labelling aspect in ``aspects``."""
    pos = {a: i for i, a in enumerate(aspects)}
    unknown = sorted(set(aspect_col) - set(pos))
    if unknown:
        raise StageError(f"pairs labelled with aspects {unknown} have no proxy model "
                         f"(models exist for {aspects}). Re-run the proxy stage.")
    return aspect_col.map(pos).to_numpy(np.int64)


def check_gaps(gaps: np.ndarray, aspects: list[str], pair_ids: np.ndarray,
               id_name: str = "pair_id") -> None:
    """Stop on NaN / infinite proxy gaps: a NaN would silently count as 0 in PD.
    ``id_name`` names what ``pair_ids`` holds (the sharded pass knows row numbers only)."""
    bad = ~np.isfinite(np.asarray(gaps, dtype=np.float64))
    if bad.any():
        rows, cols = np.nonzero(bad)
        first = pair_ids[rows[0]]
        first = first.item() if hasattr(first, "item") else first  # no np.int64(...) repr
        where = {aspects[c]: int((cols == c).sum()) for c in np.unique(cols)}
        raise StageError(
            f"the proxy models gave {int(bad.sum())} non-finite reward gaps (NaN or inf) on "
            f"{len(np.unique(rows))} pairs (per aspect: {where}; first {id_name} "
            f"{first!r}). PD would be wrong. Fix: re-run the proxy stage (a "
            "diverged head: lower proxy.lr, raise proxy.l2); with proxy.dtype=float16 use "
            "float32 or bfloat16.")


def check_pd(pd_: np.ndarray) -> None:
    """Stop when PD carries no ranking: every pair would tie and selection = pair_id order."""
    if len(pd_) > 1 and np.ptp(pd_) == 0:
        raise StageError(
            f"PD is the same value ({float(pd_[0]):g}) for all {len(pd_)} pairs: the proxy "
            "models give no reward difference on any other aspect, so PD cannot rank pairs. "
            "Fix: check report.md's proxy accuracies (a proxy at chance or a constant head), "
            "use more data per aspect, or select with select.method=random.")


def pd_weights(score_cfg, aspects: list[str], metrics: dict[str, dict]) -> np.ndarray | None:
    """The aspect weights w of PD for ``score.weighting`` (None: the paper's equal weights).

    reliability: w_k = max(0, 2*lo_k - 1), lo_k the lower end of the 95% Wilson interval of
    proxy k's held-out accuracy, so a proxy validated on few pairs counts less
    (reward.diagnostics.reliability_weights); user: ``score.aspect_weights`` (default 1)."""
    how = getattr(score_cfg, "weighting", "equal")
    if how == "equal":
        return None
    if how == "reliability":
        from ..reward.diagnostics import reliability_weights
        w = reliability_weights(metrics, aspects)
    elif how == "user":
        given = dict(getattr(score_cfg, "aspect_weights", {}) or {})
        unknown = sorted(set(given) - set(aspects))
        if unknown:
            raise StageError(f"score.aspect_weights names aspects {unknown} that have no proxy "
                             f"model (aspects: {aspects}). Fix: correct or remove them.")
        w = np.array([float(given.get(a, 1.0)) for a in aspects])
    else:
        raise StageError(f"score.weighting={how!r}: expected equal, reliability or user.")
    log.info("PD aspect weights (%s): %s", how, dict(zip(aspects, np.round(w, 4).tolist())))
    return w


def gap_col(aspect: str) -> str:
    return f"gap__{aspect}"


def gaps_frame(df: pd.DataFrame, gaps_fn, aspects, margin_fn=None) -> pd.DataFrame:
    """Step 1 of a shard: pair_id, aspect, gap__<a> (float64) [, margin] for the rows of ``df``.
    ``gaps_fn(df) -> (n, K)``; ``margin_fn(df) -> (n,)`` or (n, 1), the unified model's gap."""
    K = len(aspects)
    gaps = np.asarray(gaps_fn(df), dtype=np.float64) if len(df) else np.zeros((0, K))
    if gaps.shape != (len(df), K):
        raise StageError(f"the scorer returned gaps of shape {gaps.shape} for {len(df)} pairs; "
                         f"expected {(len(df), K)} (one column per aspect {list(aspects)}).")
    out = pd.DataFrame({"pair_id": df["pair_id"].to_numpy(), "aspect": df["aspect"].to_numpy()})
    for c, a in enumerate(aspects):
        out[gap_col(a)] = gaps[:, c]
    if margin_fn is not None:
        # a shard may hold no train rows at all (only test inputs): nothing to reshape then
        m = (np.asarray(margin_fn(df), dtype=np.float64).reshape(len(df), -1)[:, 0] if len(df)
             else np.zeros(0))
        out["margin"] = m
    return out


def pd_frame(frame: pd.DataFrame, aspects, q: np.ndarray, label: np.ndarray,
             weights: np.ndarray | None = None) -> pd.DataFrame:
    """Step 2 of a shard: the gap frame plus norm__<a> (clipped by q) and pd, margin last.
    ``q``: the normaliser over ALL scored pairs (pd.normaliser); ``label``: the rows' aspects."""
    delta = frame[[gap_col(a) for a in aspects]].to_numpy(np.float64)
    delta_n = normalise(delta, q)
    out = frame.copy()
    for c, a in enumerate(aspects):
        out[f"norm__{a}"] = delta_n[:, c]
    out["pd"] = preference_divergence(delta_n, label, weights)
    if "margin" in out.columns:
        out = out[[c for c in out.columns if c != "margin"] + ["margin"]]
    return out


def score_table(pairs: pd.DataFrame, gaps: np.ndarray, aspects: list[str], gamma: float,
                margin: np.ndarray | None = None,
                weights: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """The score table of pairs whose raw proxy gaps (N, K) are given: ONE shard of the
    engine's steps. Returns (table, {aspect: q_k}).
    ``weights``: per-aspect PD weights (``pd_weights``); None = equal (the paper)."""
    if any(c.startswith(HIDDEN_PREFIX) for c in pairs.columns):
        raise StageError("score_table was given hidden columns; pass schema.public_view(pairs).")
    if np.shape(gaps) != (len(pairs), len(aspects)):
        raise StageError(f"gaps have shape {np.shape(gaps)}, expected "
                         f"{(len(pairs), len(aspects))}.")
    check_gaps(gaps, aspects, pairs["pair_id"].to_numpy())
    frame = gaps_frame(pairs, lambda _: gaps, aspects,
                       None if margin is None else (lambda _: margin))
    label = label_index(pairs["aspect"], aspects)
    q = normaliser(np.asarray(gaps, dtype=np.float64), label, gamma)
    out = pd_frame(frame, aspects, q, label, weights)
    check_pd(out["pd"].to_numpy())
    return out, {a: float(q[c]) for c, a in enumerate(aspects)}


def pd_rati_table(pairs_with_hidden: pd.DataFrame, aspects: list[str],
                  gamma: float) -> pd.DataFrame | None:
    """PD from the true per-aspect rating gaps (oracle). None when some aspect's true gap is
    unknown for the data (e.g. paired input without ratings)."""
    cols = [delta_col(a) for a in aspects]
    if any(c not in pairs_with_hidden.columns for c in cols):
        return None
    gaps = pairs_with_hidden[cols].to_numpy(np.float64)
    label = label_index(pairs_with_hidden["aspect"], aspects)
    pd_, _, _ = pd_from_gaps(gaps, label, gamma)
    return pd.DataFrame({"pair_id": pairs_with_hidden["pair_id"].to_numpy(), "pd_rati": pd_})
