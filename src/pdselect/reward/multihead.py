"""multihead backend: ONE fine-tuned backbone with a scalar head per job, trained jointly.

    cfg.proxy.backend = "multihead"; cfg.proxy.model_path = "minilm"   # or smollm2, a folder
    models, unified = train_joint_models(train, aspects, cfg.proxy, seed)   # one training
    models.save(run / "proxy" / "aspects"); unified.save(run / "proxy" / "unified")

Every job the per-aspect protocol (base.py) hands to ``fit`` (final/<aspect>, val/<aspect>)
is one head of one :class:`.multihead_net.MultiHeadNet`; the loss, weighting and early
stopping are in :mod:`.multihead_train`. ``train_joint_models`` adds the unified job (all
pairs, the margin baseline) to the same model, so the proxy stage trains the backbone once
instead of K+1 times; the unified folder then references the aspects' saved network.

Held-out accuracy. With ``proxy.cross_fit=F`` every fold model is one joint training on the
other folds' inputs and accuracy is out of fold: clean. Without it, base.py's validation split
is by input PER ASPECT, and the shared backbone also trains on aspect A's validation inputs
through the other heads' pairs, so ``val_accuracy`` can be optimistic: use cross-fitting to
measure a multihead proxy.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import StageError
from ..run.artifacts import write_json
from .base import Job, ProxyModels, train_models, unique_texts
from .embed import TextFramer
from .multihead_net import NET_META, MultiHeadNet, load_tokenizer, resolve_backbone
from .multihead_train import fit_net, pair_set, stop_mask

logger = logging.getLogger(__name__)
SCORER_META = "multihead.json"
NET_DIR = "multihead"
UNIFIED = "unified"  # same name as reward.UNIFIED (that package imports this module)
_NETS: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


class MultiheadScorer:
    """Some heads of one net. Views of the same net (aspects, unified) share it in memory
    and on disk: the first to be saved writes the weights, later ones reference them."""

    backend = "multihead"

    def __init__(self, net: MultiHeadNet, heads: list[int], names: list[str], batch_size: int):
        self.net, self.heads, self.names = net, [int(h) for h in heads], list(names)
        self.batch_size = int(batch_size)

    def rewards(self, inputs: Sequence[str], responses: Sequence[str],
                progress: bool = False) -> np.ndarray:
        ids = self.net.framer.joint_ids(list(inputs), list(responses))
        return self.net.rewards(ids, self.batch_size)[:, self.heads]

    def select(self, positions: list[int]) -> "MultiheadScorer":
        return MultiheadScorer(self.net, [self.heads[p] for p in positions],
                               [self.names[p] for p in positions], self.batch_size)

    def save(self, out_dir: Path) -> None:
        out_dir = Path(out_dir).resolve()
        saved = getattr(self.net, "saved_dir", None)
        if saved is None or not (Path(saved) / NET_META).exists():
            self.net.save(out_dir / NET_DIR)
            self.net.saved_dir = out_dir / NET_DIR
        meta = {"net": os.path.relpath(self.net.saved_dir, out_dir), "heads": self.heads,
                "names": self.names}
        write_json(out_dir / SCORER_META, meta)

    @classmethod
    def load(cls, out_dir: Path, cfg) -> "MultiheadScorer":
        meta_file = Path(out_dir) / SCORER_META
        meta = json.loads(meta_file.read_text())
        folder = (Path(out_dir) / meta["net"]).resolve()
        if not (folder / NET_META).exists():
            raise StageError(f"{meta_file}: its network {folder} is missing (the unified "
                             "folder references the aspects' network; copy the whole proxy "
                             "folder). Fix: restore it, or re-run the proxy stage.")
        return cls(_shared_net(folder, cfg.device), meta["heads"], meta["names"],
                   cfg.batch_size)


def _shared_net(folder: Path, device: str) -> MultiHeadNet:
    """One loaded net per saved folder and device while anything uses it (the aspects and
    unified scorers of a run load the same folder)."""
    key = (str(folder), str(device), (folder / "heads.pt").stat().st_mtime_ns)
    net = _NETS.get(key)
    if net is None:
        net = MultiHeadNet.load(folder, device)
        net.saved_dir = folder
        _NETS[key] = net
    return net


class MultiheadFitted:
    def __init__(self, net: MultiHeadNet, head_of: dict[str, int], batch_size: int):
        self.net, self.head_of, self.batch_size = net, head_of, batch_size

    def rewards(self, names, inputs, responses) -> np.ndarray:
        ids = self.net.framer.joint_ids(list(inputs), list(responses))
        return self.net.rewards(ids, self.batch_size)[:, [self.head_of[n] for n in names]]

    def scorer(self, names: list[str]) -> MultiheadScorer:
        return MultiheadScorer(self.net, [self.head_of[n] for n in names], names,
                               self.batch_size)


class MultiheadBackend:
    name = "multihead"
    cheap = False  # a fine-tune: no extra rho = 0 diagnostic fit

    def __init__(self, cfg, out_dir: Path | None = None):
        self.cfg = cfg
        # the tokenizer alone: dlen needs token counts before any weights are loaded
        self.framer = TextFramer(load_tokenizer(resolve_backbone(cfg.model_path)),
                                 cfg.max_input_tokens, cfg.max_response_tokens)

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        return self.framer.n_tokens(texts)

    def fit(self, pairs: pd.DataFrame, jobs: list[Job], seed: int,
            progress: bool = False) -> MultiheadFitted:
        cfg = self.cfg
        if sum(j.name.startswith("val/") for j in jobs) > 1:
            logger.warning("multihead val_accuracy is optimistic: the shared backbone also "
                           "trains on each aspect's validation inputs through the other "
                           "heads' pairs. Set proxy.cross_fit (e.g. 5) for held-out numbers.")
        net = MultiHeadNet.build(cfg.model_path, len(jobs), cfg, seed).to(cfg.device)
        table, cw, cl = unique_texts(pairs)
        ids = net.framer.joint_ids(table["input"].tolist(), table["response"].tolist())
        ps = pair_set(jobs, cw, cl, ids)
        inputs = pairs["input_id"].to_numpy()
        held = stop_mask(np.concatenate([inputs[j.rows] for j in jobs]),
                         cfg.multihead.stop_fraction, seed)
        logger.info("multihead proxy (%s, %d heads): %d train pairs, %d stopping pairs",
                    net.info["backbone"], len(jobs), int((~held).sum()), int(held.sum()))
        hist = fit_net(net, ids, ps.take(~held), ps.take(held), cfg.multihead, seed, progress)
        net.info["training"] = {**hist, "heads": [j.name for j in jobs]}
        return MultiheadFitted(net, {j.name: h for h, j in enumerate(jobs)}, cfg.batch_size)


# ----------------------------------------------------------------------------- joint
def train_joint_models(train: pd.DataFrame, aspects: list[str], cfg, seed: int,
                       progress: bool = False, min_pairs: int = 8,
                       diagnostics: bool = True) -> tuple[ProxyModels, ProxyModels]:
    """(aspect models, unified model) from ONE multihead training per fit: the unified job
    (every pair, aspect labels ignored) is one more head. With ``cfg.cross_fit >= 2``: F
    such trainings, both results out of fold."""
    if UNIFIED in aspects:
        raise StageError(f"an aspect is named {UNIFIED!r}, the margin model's head. Fix: "
                         "rename that aspect (data.aspects / the source's columns).")
    # the unified job's pairs are a relabelled copy: texts are deduplicated by unique_texts,
    # so the copy costs no extra forward
    both = pd.concat([train, train.assign(aspect=UNIFIED)], ignore_index=True)
    names = list(aspects) + [UNIFIED]
    F = int(getattr(cfg, "cross_fit", 0) or 0)
    if F >= 2:
        from .crossfit import train_cross_fitted

        joint = train_cross_fitted(both, names, cfg, seed, lambda c, _o=None: MultiheadBackend(c),
                                   F, None, progress, min_pairs, diagnostics)
    else:
        joint = train_models(both, names, cfg, seed, MultiheadBackend(cfg), progress,
                             min_pairs, diagnostics)
    return view(joint, names, list(aspects)), view(joint, names, [UNIFIED])


def view(models: ProxyModels, names: list[str], subset: list[str]) -> ProxyModels:
    """The models of ``subset`` (a sub-list of ``names``) sharing ``models``' nets."""
    pos = [names.index(a) for a in subset]
    metrics = {a: models.metrics[a] for a in subset if a in models.metrics}
    folds = getattr(models, "folds", None)
    if folds is not None:
        from .crossfit import CrossFitModels

        return CrossFitModels(subset, metrics, [view(f, names, subset) for f in folds],
                              models.seed, models.info)
    return ProxyModels(subset, metrics, models.scorer.select(pos), models.info, models.shrink)


def save_joint(models: ProxyModels, unified: ProxyModels, out_dir: Path) -> None:
    """aspects/ holds the network(s), unified/ references them: saved in this order."""
    models.save(Path(out_dir) / "aspects")
    unified.save(Path(out_dir) / "unified")
