"""Bradley-Terry heads on frozen features: many scalar heads trained together in one module.

Each head h sees its own pair group g = (chosen rows, rejected rows, dlen, rho) and minimises

    mean_i  -log sigmoid( r_h(x_w,i) - r_h(x_l,i) + rho_g * dlen_i )  +  l2 * ||W_h||^2

(``pdselect.pd.bt_logit`` / ``bt_loss``, here in torch for autograd). Heads do not share
parameters, so summing the groups' losses and stepping one Adam trains every head exactly as if
it were trained alone, in a single full-batch loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def bt_logit_t(r_w: torch.Tensor, r_l: torch.Tensor, dlen: torch.Tensor, rho: float) -> torch.Tensor:
    """r(w) - r(l) + rho * dlen: the torch twin of :func:`pdselect.pd.bt_logit`."""
    return r_w - r_l + rho * dlen


def bt_loss_t(logit: torch.Tensor) -> torch.Tensor:
    """Per-pair -log sigmoid(logit) = softplus(-logit): twin of :func:`pdselect.pd.bt_loss`."""
    return nn.functional.softplus(-logit)


@dataclass
class PairGroup:
    """The training pairs of one head: row indices into the feature matrix."""

    head: int
    chosen: np.ndarray      # (n,) rows of X for y_w
    rejected: np.ndarray    # (n,) rows of X for y_l
    dlen: np.ndarray        # (n,) normalised token-length difference len(y_w) - len(y_l)
    rho: float


class BTHeads(nn.Module):
    """``n_heads`` independent scalar heads on ``dim``-d features: linear (w.x) or a one-hidden-
    layer MLP. No bias: a constant cancels in r(w) - r(l)."""

    def __init__(self, n_heads: int, dim: int, kind: str = "linear", hidden: int = 256,
                 seed: int = 0):
        super().__init__()
        self.kind, self.n_heads, self.dim, self.hidden = kind, n_heads, dim, hidden
        g = torch.Generator().manual_seed(seed)
        if kind == "linear":
            # zeros: the problem is convex, so a deterministic start loses nothing
            self.w = nn.Parameter(torch.zeros(n_heads, dim))
        elif kind == "mlp":
            self.w1 = nn.Parameter(torch.randn(n_heads, dim, hidden, generator=g) / dim ** 0.5)
            self.b1 = nn.Parameter(torch.zeros(n_heads, hidden))
            self.w2 = nn.Parameter(torch.randn(n_heads, hidden, generator=g) / hidden ** 0.5)
        else:
            raise ValueError(f"head must be 'linear' or 'mlp', got {kind!r}")

    def head_reward(self, x: torch.Tensor, h: int) -> torch.Tensor:
        """(n,) rewards of head h on features x (n, dim)."""
        if self.kind == "linear":
            return x @ self.w[h]
        return nn.functional.gelu(x @ self.w1[h] + self.b1[h]) @ self.w2[h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_heads) rewards of every head."""
        if self.kind == "linear":
            return x @ self.w.T
        hid = nn.functional.gelu(torch.einsum("nd,kdh->nkh", x, self.w1) + self.b1)
        return (hid * self.w2).sum(-1)

    def penalty(self, h: int) -> torch.Tensor:
        if self.kind == "linear":
            return (self.w[h] ** 2).sum()
        return (self.w1[h] ** 2).sum() + (self.w2[h] ** 2).sum()


def fit_heads(X: np.ndarray, groups: list[PairGroup], n_heads: int, kind: str = "linear",
              hidden: int = 256, l2: float = 1e-4, epochs: int = 300, lr: float = 0.01,
              seed: int = 0, device: str = "cpu", optimizer: str = "adam",
              share: np.ndarray | None = None, shared_l2: float | None = None) -> BTHeads:
    """Train every head on its group, full batch; returns the module in eval mode.

    optimizer="adam": ``epochs`` Adam steps at ``lr``. optimizer="lbfgs": L-BFGS with a strong-
    Wolfe line search, at most ``epochs`` iterations (``lr`` unused); the linear problem is
    convex, so this reaches the regularised optimum instead of stopping part-way.

    share (linear heads only): (n_heads,) share-group of every head, or None. Heads of one group
    are multi-task heads w_h = s_g + v_h: a trunk s_g trained on all the group's pairs (L2
    ``shared_l2``) plus the head's own part v_h (L2 ``l2``). The trunk is folded into w after
    training, so the result is an ordinary linear BTHeads.
    """
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    torch.manual_seed(seed)
    model = BTHeads(n_heads, X.shape[1], kind, hidden, seed).to(device)
    prepared = _prepare_groups(X, groups, device)
    if not prepared:
        return model.eval()
    trunk = share_t = None
    if share is not None:
        if kind != "linear":
            raise ValueError("shared trunks (proxy.multitask) need head=linear")
        share_t = torch.as_tensor(np.asarray(share, dtype=np.int64), device=device)
        trunk = nn.Parameter(torch.zeros(int(share_t.max()) + 1, X.shape[1], device=device))
    step = (_linear_step(model, prepared, l2, trunk, share_t,
                         l2 if shared_l2 is None else shared_l2)
            if kind == "linear" else None)
    params = list(model.parameters()) + ([trunk] if trunk is not None else [])

    def total_loss() -> torch.Tensor:
        if step is not None:
            return step()
        loss = torch.zeros((), device=device)
        for h, xw, xl, dl, rho in prepared:
            logit = bt_logit_t(model.head_reward(xw, h), model.head_reward(xl, h), dl, rho)
            loss = loss + bt_loss_t(logit).mean() + l2 * model.penalty(h)
        return loss

    _minimise(total_loss, params, optimizer, epochs, lr)
    if trunk is not None:
        with torch.no_grad():
            model.w.add_(trunk[share_t])
    return model.eval()


def _prepare_groups(X: np.ndarray, groups: list[PairGroup], device: str) -> list[tuple]:
    """(head, chosen rows, rejected rows, dlen, rho) tensors of every non-empty group."""
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
    prepared = []
    for g in groups:
        if len(g.chosen) == 0:
            continue
        prepared.append((g.head, Xt[torch.as_tensor(g.chosen, device=device)],
                         Xt[torch.as_tensor(g.rejected, device=device)],
                         torch.as_tensor(np.asarray(g.dlen, dtype=np.float32), device=device),
                         float(g.rho)))
    return prepared


def _minimise(total_loss, params: list, optimizer: str, epochs: int, lr: float) -> None:
    """Full-batch minimisation: ``epochs`` Adam steps, or L-BFGS (strong Wolfe) to convergence."""
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=int(epochs),
                                history_size=20, tolerance_grad=1e-9, tolerance_change=1e-12,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = total_loss()
            loss.backward()
            return loss
        opt.step(closure)
        return
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(int(epochs)):
        opt.zero_grad(set_to_none=True)
        loss = total_loss()
        loss.backward()
        opt.step()


def _linear_step(model: BTHeads, prepared: list, l2: float, trunk: torch.Tensor | None = None,
                 share: torch.Tensor | None = None, shared_l2: float = 0.0):
    """All linear heads in one step: r(w) - r(l) = (x_w - x_l) . w_h. Every group's pairs are
    one contiguous block of the stacked differences, so each block needs a matrix-VECTOR
    product with its own head (P x d work in all; gathering a weight row per pair instead
    costs a P x d copy forward and a scatter backward, ~8x slower on 16k-pair aspects). The
    loss is the same as the per-head loop. With a ``trunk`` (G, d), head h's weights are
    w_h + trunk[share[h]]."""
    diffs = [xw - xl for _, xw, xl, _, _ in prepared]                          # [(n_g, d)]
    heads = [h for h, *_ in prepared]
    shift = torch.cat([rho * dl for _, _, _, dl, rho in prepared])            # (P,)
    weight = torch.cat([torch.full((len(xw),), 1.0 / len(xw), device=xw.device)
                        for _, xw, _, _, _ in prepared])                       # (P,)
    used = torch.tensor(sorted(set(heads)), device=shift.device)

    def logits(extra=None) -> torch.Tensor:
        parts = []
        for h, d in zip(heads, diffs):
            w = model.w[h] if extra is None else model.w[h] + extra(h)
            parts.append(d @ w)
        return torch.cat(parts) + shift

    def step() -> torch.Tensor:
        if trunk is None:
            return (bt_loss_t(logits()) * weight).sum() + l2 * (model.w[used] ** 2).sum()
        logit = logits(lambda h: trunk[share[h]])
        # the trunk's loss weight: its heads' pair losses are each means, so the trunk sees the
        # sum of its heads' mean losses; its penalty counts once per head it serves
        n_share = torch.bincount(share[used], minlength=trunk.shape[0]).clamp(min=1)
        return ((bt_loss_t(logit) * weight).sum() + l2 * (model.w[used] ** 2).sum()
                + shared_l2 * (n_share[:, None] * trunk ** 2).sum())
    return step


#: rows per block of the MLP heads' float64 matmuls; every block has exactly this shape
SCORE_BLOCK = 1024


@torch.inference_mode()
def head_rewards(model: BTHeads, X: np.ndarray, device: str = "cpu",
                 chunk: int = 8192) -> np.ndarray:
    """(n, n_heads) float64 rewards; a row's rewards depend on that row alone.

    Why: BLAS picks kernels (and summation orders) by matrix shape, so a float32 ``X @ W.T`` over
    10 rows and over 24 rows differs in the last bits for the same row (~2e-6 on gaps, seen on
    AVX-512/AMX CPUs). Scores must not depend on batch, shard or engine, so heads are evaluated
    in float64 without shape-dependent kernels: linear heads as an elementwise product summed
    along the contiguous feature axis (numpy's pairwise sum: the same order for every row);
    MLP heads as float64 matmuls over zero-padded blocks of exactly ``SCORE_BLOCK`` rows, so
    every call runs the same kernel shape. Weights are cast from the trained float32 once.
    ``device`` is accepted for API stability; scoring heads is cheap next to encoding.
    """
    n = len(X)
    out = np.empty((n, model.n_heads), dtype=np.float64)
    if n == 0:
        return out
    if model.kind == "linear":
        W = model.w.detach().cpu().double().numpy()                        # (H, d)
        step = max(1, chunk // max(model.n_heads, 1))
        for s in range(0, n, step):
            x = np.asarray(X[s: s + step], dtype=np.float64)               # (b, d)
            out[s: s + len(x)] = (x[:, None, :] * W[None, :, :]).sum(-1)
        return out
    w1 = model.w1.detach().cpu().double()                                  # (H, d, h)
    b1 = model.b1.detach().cpu().double()                                  # (H, h)
    w2 = model.w2.detach().cpu().double()                                  # (H, h)
    block = torch.zeros((SCORE_BLOCK, X.shape[1]), dtype=torch.float64)
    for s in range(0, n, SCORE_BLOCK):
        x = np.asarray(X[s: s + SCORE_BLOCK], dtype=np.float64)
        block.zero_()
        block[: len(x)] = torch.from_numpy(x)
        hid = nn.functional.gelu(torch.einsum("nd,kdh->nkh", block, w1) + b1)
        out[s: s + len(x)] = (hid * w2).sum(-1)[: len(x)].numpy()
    return out
