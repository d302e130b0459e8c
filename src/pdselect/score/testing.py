"""Deterministic stand-ins for the proxy models (tests and benchmarks of the scale engines).

``HashGaps(K)`` maps each pair to K pseudo-random gaps derived from a hash of its pair_id, so a
pair gets the same gaps whichever shard, process or Ray actor scores it, at ~10M pairs/s.
``ties=True`` rounds gaps to a coarse grid so PD has many exact ties (selection edge cases).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class HashGaps:
    def __init__(self, n_aspects: int, ties: bool = False, salt: int = 0):
        self.K, self.ties, self.salt = int(n_aspects), bool(ties), int(salt)

    def __call__(self, pairs: pd.DataFrame) -> np.ndarray:
        h = pd.util.hash_pandas_object(pairs["pair_id"].astype(str), index=False,
                                       hash_key="pdselect-hashgap").to_numpy(np.uint64)
        out = np.empty((len(h), self.K))
        for k in range(self.K):
            x = h ^ np.uint64((0x9E3779B97F4A7C15 * (k + 1 + self.salt)) % 2**64)
            x = (x ^ (x >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
            x ^= x >> np.uint64(29)
            u = (x >> np.uint64(11)).astype(np.float64) / float(2**53)   # uniform [0, 1)
            out[:, k] = 4.0 * u - 2.0
        return np.round(out * 2) / 2 if self.ties else out


class HashGapsFactory:
    """Picklable zero-argument factory for the Ray engine."""

    def __init__(self, n_aspects: int, ties: bool = False):
        self.n_aspects, self.ties = n_aspects, ties

    def __call__(self) -> HashGaps:
        return HashGaps(self.n_aspects, self.ties)
