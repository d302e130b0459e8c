"""Backend-independent part of proxy reward training (METHOD.md 3.1-3.2) and the ProxyModels
object the score stage uses.

For each aspect k, with D_k = the train pairs labelled k:
  1. dlen = (tokens(y_w) - tokens(y_l)) / length_scale, tokens of the proxy's tokenizer;
  2. split D_k BY INPUT into fit / validation parts (val_fraction of the inputs);
  3. "val" job: length-balanced resample of the fit part, train with rho, measure val accuracy
     (reward gap only, rho dropped) on the validation part;
  4. "final" job: length-balanced resample of ALL of D_k, train with rho: the scoring model;
  5. "rho0" job (when the backend is cheap): same resample with rho = 0, only to report how much
     the length term lowers the reward's correlation with response length.
A backend turns a list of jobs into fitted rewards; see ``Backend``.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from ..run.artifacts import write_json
from ..errors import StageError
from ..pd import length_balanced_indices, length_balanced_share

logger = logging.getLogger(__name__)

MIN_PAIRS_PER_ASPECT = 8
META_FILE = "proxy_models.json"


@dataclass
class Job:
    """One reward model to fit: its training pairs (row positions in the pair table, repeats
    allowed after resampling), their normalised length differences and the fixed rho."""

    name: str
    aspect: str
    rows: np.ndarray
    dlen: np.ndarray
    rho: float


class Scorer(Protocol):
    backend: str

    def rewards(self, inputs: Sequence[str], responses: Sequence[str],
                progress: bool = False) -> np.ndarray: ...

    def save(self, out_dir: Path) -> None: ...


class Fitted(Protocol):
    def rewards(self, names: list[str], inputs: Sequence[str],
                responses: Sequence[str]) -> np.ndarray: ...

    def scorer(self, names: list[str]) -> Scorer: ...


class Backend(Protocol):
    name: str
    cheap: bool  # True: extra diagnostic fits (rho = 0) are affordable

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray: ...

    def fit(self, pairs: pd.DataFrame, jobs: list[Job], seed: int,
            progress: bool = False) -> Fitted: ...


# ----------------------------------------------------------------------------- text tables
def unique_texts(pairs: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Unique (input, response) rows over chosen and rejected, and each pair's two row indices."""
    both = pd.DataFrame({"input": np.concatenate([pairs["input"].to_numpy(), pairs["input"].to_numpy()]),
                         "response": np.concatenate([pairs["chosen"].to_numpy(),
                                                     pairs["rejected"].to_numpy()])})
    # ngroup(sort=False) numbers groups by first appearance, the order drop_duplicates keeps
    codes = both.groupby(["input", "response"], sort=False).ngroup().to_numpy()
    table = both.drop_duplicates().reset_index(drop=True)
    n = len(pairs)
    return table, codes[:n].astype(np.int64), codes[n:].astype(np.int64)


def token_dlen(pairs: pd.DataFrame, n_tokens, length_scale: float) -> np.ndarray:
    """(tokens(y_w) - tokens(y_l)) / length_scale, each unique response tokenised once."""
    resp = pd.unique(np.concatenate([pairs["chosen"].to_numpy(), pairs["rejected"].to_numpy()]))
    lens = dict(zip(resp, n_tokens(list(resp))))
    lw = pairs["chosen"].map(lens).to_numpy(dtype=np.float64)
    ll = pairs["rejected"].map(lens).to_numpy(dtype=np.float64)
    return (lw - ll) / float(length_scale)


def split_by_input(input_ids: np.ndarray, val_fraction: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the fit and validation parts; no input appears in both."""
    uniq = pd.unique(input_ids)
    n_val = int(round(val_fraction * len(uniq)))
    if val_fraction > 0 and len(uniq) >= 2:
        n_val = min(max(n_val, 1), len(uniq) - 1)
    else:
        n_val = 0
    val_inputs = set(rng.permutation(uniq)[:n_val].tolist())
    is_val = np.array([i in val_inputs for i in input_ids], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def subsample_per_aspect(aspects: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Sorted positions of at most ``cap`` pairs per aspect (proxy.max_pairs_per_aspect), a
    uniform sample from each aspect's own seeded stream; every position when ``cap`` is None
    or no aspect exceeds it (so small runs train on exactly the pairs they did before)."""
    keep = []
    for a in pd.unique(aspects):
        rows = np.flatnonzero(aspects == a)
        if cap is not None and len(rows) > cap:
            rng = np.random.default_rng([int(seed), 23, zlib.crc32(str(a).encode())])
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        keep.append(rows)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def read_train_sample(path: Path, cap: int | None, seed: int) -> pd.DataFrame:
    """The public columns of the train pairs in ``path`` (the aggregate stage's pair table)
    that :func:`subsample_per_aspect` keeps, read row group by row group: only the sample's
    texts are ever in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    light = pf.read(columns=["split", "aspect"]).to_pandas()
    train = np.flatnonzero(light["split"].to_numpy() == "train")
    keep = train[subsample_per_aspect(light["aspect"].to_numpy()[train], cap, seed)]
    cols = [c for c in pf.schema_arrow.names if not c.startswith("h_")]
    parts, start = [], 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        lo, hi = np.searchsorted(keep, [start, start + n])
        if hi > lo:
            parts.append(pf.read_row_group(g, columns=cols).take(pa.array(keep[lo:hi] - start)))
        start += n
    table = pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table().select(cols)
    return table.to_pandas()


def aspect_rng(seed: int, aspect: str) -> np.random.Generator:
    """Per-aspect stream: results for one aspect do not depend on the other aspects."""
    return np.random.default_rng([int(seed), zlib.crc32(aspect.encode())])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# ----------------------------------------------------------------------------- training
def check_aspects(pairs: pd.DataFrame, aspects: list[str], min_pairs: int) -> None:
    counts = pairs["aspect"].value_counts()
    low = {a: int(counts.get(a, 0)) for a in aspects if counts.get(a, 0) < min_pairs}
    if low:
        raise StageError(
            f"proxy reward models: too few train pairs for aspect(s) {low} (need >= {min_pairs} "
            f"each to train a proxy model; counts per aspect: {counts.to_dict()}). Fix: drop "
            "these aspects (data.aspects), use more data or a lower conflict level, or lower "
            "aggregate.min_pairs_per_aspect only if you accept a near-random proxy.")
    extra = sorted(set(pairs["aspect"]) - set(aspects))
    if extra:
        logger.warning("pairs labelled with aspects %s have no proxy model; they are only scored",
                       extra)


def plan_jobs(pairs: pd.DataFrame, aspects: list[str], dlen: np.ndarray, cfg, seed: int,
              diagnostics: bool) -> tuple[list[Job], dict[str, dict]]:
    """Val / final / rho0 jobs per aspect and the per-aspect bookkeeping for metrics."""
    jobs: list[Job] = []
    info: dict[str, dict] = {}
    labels = pairs["aspect"].to_numpy()
    for a in aspects:
        rng = aspect_rng(seed, a)
        rows = np.flatnonzero(labels == a)
        fit_pos, val_pos = split_by_input(pairs["input_id"].to_numpy()[rows], cfg.val_fraction, rng)
        d = dlen[rows]
        if len(val_pos):
            sub = fit_pos[length_balanced_indices(d[fit_pos], cfg.p_r, cfg.tau, rng)]
            jobs.append(Job(f"val/{a}", a, rows[sub], d[sub], cfg.rho))
        final = length_balanced_indices(d, cfg.p_r, cfg.tau, rng)
        jobs.append(Job(f"final/{a}", a, rows[final], d[final], cfg.rho))
        if diagnostics and cfg.rho > 0:
            jobs.append(Job(f"rho0/{a}", a, rows[final], d[final], 0.0))
        f_plus = float(np.mean(d >= 0))
        info[a] = {"rows": rows, "val_rows": rows[val_pos], "n_pairs": int(len(rows)),
                   "n_inputs": int(pairs["input_id"].iloc[rows].nunique()),
                   "n_train": int(len(final)), "n_val": int(len(val_pos)),
                   "frac_longer_chosen": float(np.mean(d > 0)),
                   "frac_equal_length": float(np.mean(d == 0)),
                   "share_longer_or_equal_before": f_plus,
                   "share_longer_or_equal_after": float(np.mean(d[final] >= 0)),
                   "target_share_longer_or_equal": length_balanced_share(f_plus, cfg.tau)}
    return jobs, info


def _length_corr(fitted: Fitted, name: str, pairs: pd.DataFrame, rows: np.ndarray,
                 n_tokens) -> float:
    sub = pairs.iloc[rows]
    table, _, _ = unique_texts(sub)
    r = fitted.rewards([name], table["input"].tolist(), table["response"].tolist())[:, 0]
    return pearson(r, n_tokens(table["response"].tolist()))


def _val_accuracy(fitted: Fitted, name: str, pairs: pd.DataFrame, rows: np.ndarray) -> float:
    sub = pairs.iloc[rows]
    table, cw, cl = unique_texts(sub)
    r = fitted.rewards([name], table["input"].tolist(), table["response"].tolist())[:, 0]
    gap = r[cw] - r[cl]
    return float(np.mean(gap > 0)) if len(gap) else float("nan")


def train_models(pairs: pd.DataFrame, aspects: list[str], cfg, seed: int, backend: Backend,
                 progress: bool = False, min_pairs: int = MIN_PAIRS_PER_ASPECT,
                 diagnostics: bool = True) -> "ProxyModels":
    """The whole per-aspect protocol (module docstring) on one backend.

    ``diagnostics=False`` trains only the final models (no validation fit, no rho=0 fit, no
    length correlations): the same scoring models, for callers that need no metrics."""
    t0 = time.time()
    pairs = pairs.reset_index(drop=True)
    check_aspects(pairs, aspects, min_pairs)
    dlen = token_dlen(pairs, backend.n_tokens, cfg.length_scale)
    jobs, info = plan_jobs(pairs, aspects, dlen, cfg, seed,
                           diagnostics=backend.cheap and diagnostics)
    if not diagnostics:  # same rng draws as above, so the final models are identical
        jobs = [j for j in jobs if j.name.startswith("final/")]
    val_jobs = [j for j in jobs if j.name.startswith("val/")]
    fit_jobs = [j for j in jobs if not j.name.startswith("val/")]
    metrics: dict[str, dict] = {}
    if val_jobs:
        fitted_val = backend.fit(pairs, val_jobs, seed, progress)
        for j in val_jobs:
            metrics.setdefault(j.aspect, {})["val_accuracy"] = _val_accuracy(
                fitted_val, j.name, pairs, info[j.aspect]["val_rows"])
        del fitted_val
    fitted = backend.fit(pairs, fit_jobs, seed, progress)
    for a in aspects if diagnostics else []:
        m = metrics.setdefault(a, {})
        m.setdefault("val_accuracy", float("nan"))
        rows = info[a]["rows"]
        m["train_accuracy"] = _val_accuracy(fitted, f"final/{a}", pairs, rows)
        m["length_corr_after"] = _length_corr(fitted, f"final/{a}", pairs, rows, backend.n_tokens)
        if cfg.rho == 0:
            m["length_corr_before"] = m["length_corr_after"]
        elif backend.cheap:
            m["length_corr_before"] = _length_corr(fitted, f"rho0/{a}", pairs, rows,
                                                   backend.n_tokens)
        else:
            m["length_corr_before"] = float("nan")  # would need one more fine-tune per aspect
        m.update({k: v for k, v in info[a].items() if k not in ("rows", "val_rows")})
        m.update({"rho": cfg.rho, "tau": cfg.tau, "p_r": cfg.p_r, "backend": backend.name,
                  "val_split": "by input", "refit": "final model refit on all of D_k after "
                  "validation; val_accuracy is from the fit-part model (reward gap, rho dropped)"})
    scorer = fitted.scorer([f"final/{a}" for a in aspects])
    logger.info("proxy models (%s) for %d aspects in %.1fs", backend.name, len(aspects),
                time.time() - t0)
    run_info = {"seconds": round(time.time() - t0, 3), "seed": seed, "backend": backend.name,
                "n_pairs": int(len(pairs))}
    return ProxyModels(list(aspects), metrics, scorer, run_info,
                       shrink=float(getattr(cfg, "uncertainty_shrink", 0.0) or 0.0))


# ----------------------------------------------------------------------------- result
class ProxyModels:
    """K proxy reward models r_k behind one scorer. ``gaps`` is what the score stage uses."""

    def __init__(self, aspects: list[str], metrics: dict, scorer: Scorer,
                 info: dict | None = None, shrink: float = 0.0):
        self.aspects, self.metrics, self.scorer = list(aspects), metrics, scorer
        self.info = dict(info or {})  # run-level facts (seconds, seed, ...), not per aspect
        # uncertainty-aware gaps (proxy.uncertainty_shrink = c): with an ensemble of M heads,
        # gap = sign(mean) * max(0, |mean| - c * std) over members, so a gap the members do
        # not agree on shrinks towards 0 and stops moving PD
        self.shrink = float(shrink)

    @property
    def backend(self) -> str:
        return self.scorer.backend

    def rewards(self, inputs: list[str], responses: list[str], progress: bool = False) -> np.ndarray:
        """(n, K) rewards r_k(x, y) of every aspect head (no length term)."""
        if len(inputs) != len(responses):
            raise ValueError(f"{len(inputs)} inputs but {len(responses)} responses")
        return np.asarray(self.scorer.rewards(list(inputs), list(responses), progress), float)

    def gaps(self, pairs: pd.DataFrame, progress: bool = False) -> np.ndarray:
        """(N, K): r_k(x, chosen) - r_k(x, rejected), every unique text scored once."""
        if len(pairs) == 0:
            return np.zeros((0, len(self.aspects)))
        if hasattr(self.scorer, "pair_gaps"):  # a source that knows gaps, not rewards
            return np.asarray(self.scorer.pair_gaps(pairs.reset_index(drop=True), progress),
                              dtype=np.float64)
        table, cw, cl = unique_texts(pairs.reset_index(drop=True))
        members = getattr(self.scorer, "member_rewards", None)
        if self.shrink > 0 and members is not None and getattr(self.scorer, "members", 1) > 1:
            R = members(table["input"].tolist(), table["response"].tolist(), progress)
            G = R[cw] - R[cl]                                            # (N, K, M)
            mean, sd = G.mean(-1), G.std(-1, ddof=1)
            return np.sign(mean) * np.maximum(0.0, np.abs(mean) - self.shrink * sd)
        r = self.rewards(table["input"].tolist(), table["response"].tolist(), progress)
        return r[cw] - r[cl]

    def save(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.scorer.save(out_dir)
        meta = {"aspects": self.aspects, "backend": self.backend, "metrics": self.metrics,
                "info": self.info}
        write_json(out_dir / META_FILE, meta)  # written last: its presence means the save finished
