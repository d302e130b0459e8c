"""Joint training of a :class:`.multihead_net.MultiHeadNet`: every job's pairs in one stream.

Loss. A batch mixes pairs of all jobs (heads). Pair i of head h contributes
``softplus(-(r_h(x, y_w) - r_h(x, y_l) + rho_h * dlen_i))`` (``heads.bt_logit_t``: the same
logit as every backend), i.e. ONLY its own head's rewards enter, so a pair of aspect A gives
head B exactly zero gradient. Pairs are weighted ``w_i = N / (H * N_h)`` (N train pairs, H heads
with pairs, N_h of them in head h), and the batch loss is ``sum_i w_i * loss_i / batch``: in
expectation the MEAN over heads of each head's mean loss. Why equal heads rather than equal
pairs: the unified head has as many pairs as all aspects together and aspects differ in size;
per-pair weighting would let the unified job and the largest aspect shape the shared backbone.
Why fixed weights rather than a per-batch mean per head: with ~2 pairs of an aspect in a batch,
a per-batch mean would give one pair a whole head's share of the step.

Early stopping. A seeded slice of the INPUTS (``stop_fraction``) is held out; its pairs are not
trained on. The stopping loss (mean over heads of the head's mean BT loss, eval mode) is
measured every ``eval_every`` steps or once per epoch, the best weights are kept, and training
stops after ``patience`` evaluations without improvement.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .batching import pad_batch
from .heads import bt_logit_t, bt_loss_t

logger = logging.getLogger(__name__)
SORT_POOL = 32  # batches per shuffled pool sorted by length: near-uniform lengths, random mix


@dataclass
class PairSet:
    """Pairs of every head: text rows (into the framed ids) of y_w / y_l, head, dlen, rho."""

    head: np.ndarray
    w: np.ndarray
    l: np.ndarray
    dlen: np.ndarray
    rho: np.ndarray
    length: np.ndarray  # tokens of the longer framed text: what a batch is padded to

    def take(self, mask: np.ndarray) -> "PairSet":
        return PairSet(*(getattr(self, f)[mask] for f in
                         ("head", "w", "l", "dlen", "rho", "length")))

    def __len__(self) -> int:
        return len(self.head)


def pair_set(jobs, cw: np.ndarray, cl: np.ndarray, ids) -> PairSet:
    lens = np.array([len(x) for x in ids], dtype=np.int64)
    parts = [(np.full(len(j.rows), h), cw[j.rows], cl[j.rows], np.asarray(j.dlen, float),
              np.full(len(j.rows), float(j.rho))) for h, j in enumerate(jobs)]
    head, w, l, dlen, rho = (np.concatenate(c) for c in zip(*parts))
    return PairSet(head.astype(np.int64), w, l, dlen, rho, np.maximum(lens[w], lens[l]))


def stop_mask(input_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for pairs whose input is in the seeded stopping slice (>= 1 input when fraction >
    0 and there are >= 2 inputs; never every input)."""
    uniq = np.array(sorted(set(input_ids.tolist()), key=str), dtype=object)
    n = int(round(fraction * len(uniq)))
    n = min(max(n, 1), len(uniq) - 1) if fraction > 0 and len(uniq) >= 2 else 0
    rng = np.random.default_rng([int(seed), 31])
    held = set(rng.permutation(uniq)[:n].tolist())
    return np.array([x in held for x in input_ids], dtype=bool)


def head_weights(head: np.ndarray) -> np.ndarray:
    """w_i = N / (H * N_h): every head with pairs weighs the same (module docstring)."""
    counts = np.bincount(head)
    present = int((counts > 0).sum())
    return len(head) / (present * counts[head]) if len(head) else np.zeros(0)


def train_batches(length: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """Shuffled pools of SORT_POOL batches, each pool sorted by length and cut into batches
    (little padding), batch order shuffled (no length curriculum)."""
    order = rng.permutation(len(length))
    pool = batch_size * SORT_POOL
    out = []
    for s in range(0, len(order), pool):
        chunk = order[s: s + pool]
        chunk = chunk[np.argsort(length[chunk], kind="stable")]
        out += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def pair_losses(net, ids, ps: PairSet, idx: np.ndarray) -> torch.Tensor:
    """(b,) BT losses of pairs ``idx``: each unique text of the batch is run once."""
    texts, inv = np.unique(np.concatenate([ps.w[idx], ps.l[idx]]), return_inverse=True)
    inp, mask = pad_batch(ids, texts, net.tok.pad_token_id)
    dev = net.device
    R = net(inp.to(dev), mask.to(dev))                                  # (t, H)
    b = len(idx)
    h = torch.as_tensor(ps.head[idx], device=dev)
    inv = torch.as_tensor(inv, device=dev)
    rw, rl = R[inv[:b], h], R[inv[b:], h]
    # rho differs per head (rho0 jobs): rho_h * dlen_i is passed as the length term, rho = 1
    shift = torch.as_tensor(ps.rho[idx] * ps.dlen[idx], device=dev, dtype=torch.float32)
    return bt_loss_t(bt_logit_t(rw, rl, shift, 1.0))


@torch.no_grad()
def stop_loss(net, ids, ps: PairSet, batch_size: int) -> float:
    """Mean over heads of the head's mean BT loss on ``ps`` (eval mode)."""
    was = net.training
    net.eval()
    losses = np.zeros(len(ps))
    order = np.argsort(ps.length, kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        losses[idx] = pair_losses(net, ids, ps, idx).double().cpu().numpy()
    net.train(was)
    per_head = [losses[ps.head == h].mean() for h in np.unique(ps.head)]
    return float(np.mean(per_head))


def _optimiser(net, mh, total_steps: int):
    body, heads = net.trainable()
    opt = torch.optim.AdamW([{"params": body, "lr": mh.lr, "weight_decay": mh.weight_decay},
                             {"params": heads, "lr": mh.head_lr, "weight_decay": 0.0}])
    warm = max(1, total_steps // 10)

    def factor(step: int) -> float:  # linear warm-up over 10% of the steps, linear decay
        return min(1.0, (step + 1) / warm) * max(0.0, (total_steps - step) / total_steps)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _snapshot(net) -> dict:
    return {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}


def fit_net(net, ids, train: PairSet, stop: PairSet, mh, seed: int,
            progress: bool = False) -> dict:
    """Train ``net`` in place; returns the history (module docstring for loss and stopping)."""
    t0 = time.time()
    net._memo = None  # rewards memoised before training would be stale after it
    torch.manual_seed(int(seed))
    rng = np.random.default_rng([int(seed), 37])
    weights = torch.as_tensor(head_weights(train.head), dtype=torch.float32, device=net.device)
    steps_per_epoch = math.ceil(len(train) / mh.batch_size)
    total = max(1, mh.epochs * steps_per_epoch)
    opt, sched = _optimiser(net, mh, total)
    params = [p for group in net.trainable() for p in group]
    every = mh.eval_every or steps_per_epoch
    hist = {"evals": [], "n_train_pairs": len(train), "n_stop_pairs": len(stop),
            "untrained_stop_loss": stop_loss(net, ids, stop, 64) if len(stop) else None}
    best, best_state, bad, step = math.inf, None, 0, 0
    bar = _bar(total, progress)
    net.train()
    for epoch in range(mh.epochs):
        for idx in train_batches(train.length, mh.batch_size, rng):
            loss = (pair_losses(net, ids, train, idx) * weights[idx]).sum() / len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, mh.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            if bar is not None:
                bar.update(1)
            if len(stop) and (step % every == 0 or step == total):
                sl = stop_loss(net, ids, stop, 64)
                hist["evals"].append({"step": step, "epoch": epoch + 1, "stop_loss": sl,
                                      "train_loss": float(loss.detach())})
                logger.info("multihead step %d (epoch %d): stopping loss %.4f", step,
                            epoch + 1, sl)
                if sl < best - 1e-6:
                    best, best_state, bad = sl, _snapshot(net), 0
                    hist.update(best_step=step, best_stop_loss=sl)
                else:
                    bad += 1
                if mh.patience and bad >= mh.patience:
                    break
        else:
            continue
        hist["stopped_early"] = True
        break
    if bar is not None:
        bar.close()
    if best_state is not None:  # the best evaluation's weights, not the last step's
        net.load_state_dict(best_state, strict=False)
    hist.setdefault("stopped_early", False)
    hist.update(steps=step, seconds=round(time.time() - t0, 2))
    net._memo = None
    net.eval()
    return hist


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="multihead proxy", unit="step")
