"""Score: cross-scoring with the per-aspect proxy models, normalisation and PD (METHOD.md 3.3-4).

The score table has one row per TRAIN pair (the selection pool), keyed by ``pair_id``:

    pair_id, aspect, gap__<a> (raw proxy gap r_a(x,y_w) - r_a(x,y_l)), norm__<a> (clipped to
    [-1, 1] by q_a), pd, margin (unified reward model gap, when trained)

``pd_rati_table`` computes the same PD from the TRUE ratings (hidden columns): the paper's
PD-rati oracle, for evaluation only.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import StageError
from ..pd import pd_from_gaps
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

    reliability: w_k = max(0, 2*acc_k - 1) from each proxy's held-out accuracy
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


def score_table(pairs: pd.DataFrame, gaps: np.ndarray, aspects: list[str], gamma: float,
                margin: np.ndarray | None = None,
                weights: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """Build the score table from raw proxy gaps (N, K). Returns (table, {aspect: q_k}).
    ``weights``: per-aspect PD weights (``pd_weights``); None = equal (the paper)."""
    if any(c.startswith(HIDDEN_PREFIX) for c in pairs.columns):
        raise StageError("score_table was given hidden columns; pass schema.public_view(pairs).")
    if gaps.shape != (len(pairs), len(aspects)):
        raise StageError(f"gaps have shape {gaps.shape}, expected {(len(pairs), len(aspects))}.")
    check_gaps(gaps, aspects, pairs["pair_id"].to_numpy())
    label = label_index(pairs["aspect"], aspects)
    pd_, delta_n, q = pd_from_gaps(gaps, label, gamma, weights)
    check_pd(pd_)
    out = pd.DataFrame({"pair_id": pairs["pair_id"].to_numpy(),
                        "aspect": pairs["aspect"].to_numpy()})
    for c, a in enumerate(aspects):
        out[f"gap__{a}"] = gaps[:, c]
    for c, a in enumerate(aspects):
        out[f"norm__{a}"] = delta_n[:, c]
    out["pd"] = pd_
    if margin is not None:
        out["margin"] = np.asarray(margin, dtype=np.float64)
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
