"""frozen_encoder backend: cached sentence embeddings + Bradley-Terry heads (CPU, seconds).

Features per ``cfg.features``: joint = emb("input [SEP] response"), response = emb(response),
both = [joint, response] concatenated. Every job (aspect x {val, final, rho0}) x ensemble member
is one head of a single :class:`BTHeads` trained in one full-batch loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .embed import EmbeddingStore, Encoder
from ..errors import StageError
from .base import Job, unique_texts
from .heads import BTHeads, PairGroup, fit_heads, head_rewards

logger = logging.getLogger(__name__)
SCORER_FILE = "frozen_heads.pt"
SCORER_META = "frozen_heads.json"


def make_store(cfg, max_input_tokens: int | None = None,
               max_response_tokens: int | None = None) -> EmbeddingStore:
    enc = Encoder(cfg.encoder, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    return EmbeddingStore(enc, cfg.cache_dir,
                          cfg.max_input_tokens if max_input_tokens is None else max_input_tokens,
                          cfg.max_response_tokens if max_response_tokens is None
                          else max_response_tokens)


def features(store: EmbeddingStore, mode: str, inputs: Sequence[str], responses: Sequence[str],
             progress: bool = False) -> np.ndarray:
    """(n, d) or (n, 2d) features of (input, response) rows."""
    if mode == "joint":
        return store.embed(inputs, responses, "joint", progress)
    if mode == "response":
        return store.embed(None, responses, "response", progress)
    if mode == "both":  # one call: a response is tokenised once for both kinds
        return store.embed_kinds(inputs, responses, ("joint", "response"), progress)
    raise ValueError(f"proxy.features must be joint, response or both, got {mode!r}")


class FrozenScorer:
    """K aspects x M ensemble members of heads on frozen features; rewards = member mean."""

    backend = "frozen_encoder"

    def __init__(self, store: EmbeddingStore, heads: BTHeads, members: int, feature_mode: str,
                 device: str = "cpu"):
        self.store, self.heads, self.members = store, heads, int(members)
        self.feature_mode, self.device = feature_mode, device

    def member_rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        """(n, K, M) rewards of every ensemble member."""
        X = features(self.store, self.feature_mode, inputs, responses, progress)
        R = head_rewards(self.heads, X, self.device)                      # (n, K*M)
        return R.reshape(len(X), -1, self.members)

    def rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        return self.member_rewards(inputs, responses, progress).mean(-1)  # (n, K)

    def save(self, out_dir: Path) -> None:
        torch.save({k: v.cpu() for k, v in self.heads.state_dict().items()},
                   Path(out_dir) / SCORER_FILE)
        meta = {"kind": self.heads.kind, "n_heads": self.heads.n_heads, "dim": self.heads.dim,
                "hidden": self.heads.hidden, "members": self.members,
                "features": self.feature_mode, **self.store.describe()}
        (Path(out_dir) / SCORER_META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, out_dir: Path, cfg) -> "FrozenScorer":
        meta = json.loads((Path(out_dir) / SCORER_META).read_text())
        store = make_store(cfg, meta["max_input_tokens"], meta["max_response_tokens"])
        if store.encoder.id != meta["encoder_id"]:
            raise StageError(
                f"{out_dir}: proxy heads were trained on encoder {meta['encoder_id']} "
                f"({meta['encoder_path']}) but proxy.encoder now gives {store.encoder.id}. "
                "Fix: set proxy.encoder back, or re-run the proxy stage.")
        heads = BTHeads(meta["n_heads"], meta["dim"], meta["kind"], meta["hidden"])
        heads.load_state_dict(torch.load(Path(out_dir) / SCORER_FILE, weights_only=True))
        return cls(store, heads.to(cfg.device).eval(), meta["members"], meta["features"],
                   cfg.device)


class FrozenFitted:
    """All jobs' heads; ``scorer`` keeps only the requested jobs (the final models)."""

    def __init__(self, backend: "FrozenBackend", heads: BTHeads, head_of: dict[str, list[int]]):
        self.backend, self.heads, self.head_of = backend, heads, head_of

    def rewards(self, names, inputs, responses) -> np.ndarray:
        X = self.backend.features(inputs, responses)
        R = head_rewards(self.heads, X, self.backend.cfg.device)
        return np.stack([R[:, self.head_of[n]].mean(1) for n in names], axis=1)

    def scorer(self, names: list[str]) -> FrozenScorer:
        idx = [h for n in names for h in self.head_of[n]]
        M = len(self.head_of[names[0]])
        src = self.heads
        sub = BTHeads(len(idx), src.dim, src.kind, src.hidden)
        sub.load_state_dict({k: v.detach()[idx].clone() for k, v in src.state_dict().items()})
        return FrozenScorer(self.backend.store, sub.eval(), M, self.backend.cfg.features,
                            self.backend.cfg.device)


class FrozenBackend:
    name = "frozen_encoder"
    cheap = True

    def __init__(self, cfg, store: EmbeddingStore | None = None):
        self.cfg = cfg
        self.store = store if store is not None else make_store(cfg)
        self.progress = False

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return self.store.framer.n_tokens(texts)

    def features(self, inputs, responses, progress: bool = False) -> np.ndarray:
        return features(self.store, self.cfg.features, inputs, responses, progress)

    def fit(self, pairs: pd.DataFrame, jobs: list[Job], seed: int,
            progress: bool = False) -> FrozenFitted:
        cfg = self.cfg
        table, cw, cl = unique_texts(pairs)
        X = self.features(table["input"].tolist(), table["response"].tolist(), progress)
        M = int(cfg.ensemble)
        groups, head_of = [], {}
        rng = np.random.default_rng([int(seed), 7])
        for j, job in enumerate(jobs):
            head_of[job.name] = []
            for m in range(M):
                # member 0 of a single model sees the data as is; ensembles use bootstraps
                take = (np.arange(len(job.rows)) if M == 1
                        else rng.integers(0, len(job.rows), len(job.rows)))
                h = j * M + m
                head_of[job.name].append(h)
                groups.append(PairGroup(h, cw[job.rows[take]], cl[job.rows[take]],
                                        job.dlen[take], job.rho))
        mu, sd = standardiser(X) if getattr(cfg, "standardize", False) else (None, None)
        Xf = X if mu is None else (X - mu) / sd
        share = None
        multitask = getattr(cfg, "multitask", False)
        if multitask and cfg.head != "linear":
            logger.warning("proxy.multitask applies to linear heads only; head=%s trains "
                           "independent heads", cfg.head)
            multitask = False
        if multitask:
            # heads of the same job kind (val / final / rho0) and ensemble member share a trunk
            kinds = sorted({job.name.split("/")[0] for job in jobs})
            share = np.array([kinds.index(job.name.split("/")[0]) * M + m
                              for job in jobs for m in range(M)])
        heads = fit_heads(Xf, groups, len(jobs) * M, cfg.head, cfg.hidden, cfg.l2, cfg.epochs,
                          cfg.lr, seed, cfg.device, getattr(cfg, "optimizer", "adam"),
                          share, getattr(cfg, "shared_l2", None))
        if mu is not None:
            fold_standardiser(heads, mu, sd)
        return FrozenFitted(self, heads, head_of)


def standardiser(X: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the training texts' features (proxy.standardize)."""
    X = np.asarray(X, dtype=np.float64)
    return X.mean(0).astype(np.float32), np.maximum(X.std(0), eps).astype(np.float32)


@torch.no_grad()
def fold_standardiser(heads: BTHeads, mu: np.ndarray, sd: np.ndarray) -> None:
    """Rewrite heads trained on (x - mu) / sd as heads on raw x (exact), so saved scorers
    need no extra state: linear w -> w / sd (a constant offset cancels in gaps); MLP
    w1 -> w1 / sd, b1 -> b1 - (mu / sd) @ w1."""
    m = torch.as_tensor(mu, device=next(heads.parameters()).device)
    s = torch.as_tensor(sd, device=m.device)
    if heads.kind == "linear":
        heads.w.div_(s[None, :])
    else:
        heads.w1.div_(s[None, :, None])
        heads.b1.sub_(torch.einsum("d,kdh->kh", m, heads.w1))
