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

    L = max(len(ids[i]) for i in idx)
    L = -(-L // multiple) * multiple
    inp = torch.full((len(idx), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), L), dtype=torch.long)
    for r, i in enumerate(idx):
        inp[r, : len(ids[i])] = torch.tensor(ids[i])
        mask[r, : len(ids[i])] = 1
    return inp, mask


#: a length bucket is closed early (once it holds ``min_rows``) when padding its rows to the
#: longest would waste more than this share of its positions
MAX_PAD_SHARE = 0.02


def length_batches(lengths: Sequence[int], batch_size: int, max_pad_share: float = MAX_PAD_SHARE,
                   min_rows: int = 4, granule: int = 0) -> list[np.ndarray]:
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
        if n > batch_size or (n - 1 >= min_rows and 1 - (total + L) / (n * L) > max_pad_share):
            out.append(order[start:j])
            start, total = j, 0
        total += L
    if start < len(order):
        out.append(order[start:])
    return out
