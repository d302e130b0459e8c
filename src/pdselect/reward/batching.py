"""How framed texts become padded forward batches of the encoder.

    batches = length_batches(lengths, batch_size=64, granule=8)   # row indices per batch
    inp, mask = pad_batch(ids, batches[0], pad_id, multiple=8)

Kept apart from embed.py (the encoder and its cache) because the batching is what decides
padding waste and, under reduced precision, whether a text's vector depends on its batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pad_batch(ids: Sequence[Sequence[int]], idx, pad_id: int, multiple: int = 1):
    """Right-padded (input_ids, attention_mask) long tensors for the rows ``idx`` of ``ids``,
    padded to the longest row rounded up to a ``multiple``."""
    import torch

    idx = list(idx)
    L = max(len(ids[i]) for i in idx)
    L = -(-L // multiple) * multiple
    inp = np.full((len(idx), L), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), L), dtype=np.int64)
    for r, i in enumerate(idx):  # numpy row assignment: ~10x cheaper than torch.tensor per row
        inp[r, : len(ids[i])] = ids[i]
        mask[r, : len(ids[i])] = 1
    return torch.from_numpy(inp), torch.from_numpy(mask)


def pad_csr(flat: np.ndarray, offsets: np.ndarray, idx, pad_id: int, multiple: int = 1):
    """:func:`pad_batch` for rows stored as one flat id array + offsets (vectorised: no Python
    loop over rows or tokens). Returns int64 numpy (input_ids, attention_mask)."""
    idx = np.asarray(idx, dtype=np.int64)
    st = offsets[idx]
    ln = offsets[idx + 1] - st
    L = max(int(ln.max()) if len(ln) else 0, 1)
    L = -(-L // multiple) * multiple
    cols = np.arange(L, dtype=np.int64)
    mask = cols[None, :] < ln[:, None]
    if len(flat):
        inp = np.where(mask, flat[np.minimum(st[:, None] + cols[None, :], len(flat) - 1)], pad_id)
    else:
        inp = np.full(mask.shape, pad_id)
    return inp.astype(np.int64), mask.astype(np.int64)


#: a length bucket is closed early (once it holds ``min_rows``) when padding its rows to the
#: longest would waste more than this share of its positions
MAX_PAD_SHARE = 0.02


def length_batches(lengths: Sequence[int], batch_size: int, max_pad_share: float = MAX_PAD_SHARE,
                   min_rows: int = 4, granule: int = 0,
                   max_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices in length-sorted batches of at most ``batch_size`` rows. A batch with at
    least ``min_rows`` rows is closed before a row that would raise its padding share (padded
    positions / all positions) above ``max_pad_share``: on CPU a forward of 4 rows costs the
    same per token as one of 64, so short batches cost nothing and padding is near zero.

    ``granule`` g > 0: batches hold only rows of one CANONICAL length ceil(len / g) * g (and
    are padded to it, ``pad_batch(multiple=g)``), so every text is always computed at the same
    padded length whatever else is embedded with it."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if granule > 0:
        canon = -(-lengths // granule) * granule
        order = np.argsort(canon, kind="stable")
        cuts = np.flatnonzero(np.diff(canon[order])) + 1
        return [b[i: i + batch_size] for b in np.split(order, cuts) if len(b)
                for i in range(0, len(b), batch_size)]
    order = np.argsort(lengths, kind="stable")
    out, start, total = [], 0, 0
    for j, i in enumerate(order):
        n, L = j - start + 1, int(lengths[i])     # L: the longest so far (sorted ascending)
        if n > batch_size or (max_tokens and n > 1 and n * L > max_tokens) or \
                (n - 1 >= min_rows and 1 - (total + L) / (n * L) > max_pad_share):
            out.append(order[start:j])
            start, total = j, 0
        total += L
    if start < len(order):
        out.append(order[start:])
    return out


#: A CPU reduced-precision forward is filled up to this many token positions (rows x padded
#: length) with copies of its first row. Why: oneDNN picks its bfloat16 GEMM kernel by the row
#: count of the flattened (rows * L, d) activations, and the kernels round differently (~1e-3
#: on a MiniLM vector). Measured on an AMX Xeon: batches under ~384 positions (e.g. 5 rows of
#: 48 tokens, 16 rows of 24) took one kernel, larger ones another, so a text's vector depended
#: on how many mates its batch had, i.e. on proxy.batch_size. At >= 1024 positions every batch
#: of 8..296 rows at lengths 8, 24 and 128 gave bit-identical vectors.
MIN_FORWARD_TOKENS = 1024


def fill_rows(inp, mask, min_tokens: int = MIN_FORWARD_TOKENS):
    """(input_ids, attention_mask) with copies of row 0 appended until rows x length >=
    ``min_tokens``; the caller keeps the first ``len(inp)`` output rows (rows do not interact:
    attention is within a row)."""
    import torch

    n, L = inp.shape
    extra = -(-min_tokens // max(L, 1)) - n
    if extra <= 0:
        return inp, mask
    return (torch.cat([inp, inp[:1].expand(extra, L)]),
            torch.cat([mask, mask[:1].expand(extra, L)]))
