"""Content-hashed on-disk embedding cache (the frozen encoder's vectors, shared by stages and runs).

    cache = EmbeddingCache(default_cache_root(""), encoder_id)
    found = cache.get([text_key(encoder_id, "response", "resp256", None, text)])
    cache.put(keys, vectors)

Key = sha256(encoder id, text kind, token limits, text), length-prefixed parts. Vectors live in
shards ``<root>/embeddings/<encoder>/<name>.vecs.npy`` + ``<name>.keys.npy``. A shard is written
under a unique name and renamed into place, keys last, so two processes may write at once and a
reader never sees a half-written shard; a duplicate key in two shards is harmless (same vector).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..run.artifacts import file_sha256 as _sha256

logger = logging.getLogger(__name__)


def default_cache_root(cache_dir: str = "") -> Path:
    return Path(cache_dir or os.environ.get("PDSELECT_CACHE") or "~/.cache/pdselect").expanduser()


class EmbeddingCache:
    """Content-addressed vectors on disk, in append-only shards (see module docstring).

    Each shard ``<name>`` is three files: ``.vecs.npy`` (n, d) float32, ``.keys.npy`` (n, 32)
    uint8 and ``.sum.json`` (sha256 + shape of both, written LAST: a shard without it is not
    complete). A shard whose files do not match their checksums (truncated, emptied or
    overwritten) is moved aside as ``<file>.corrupt``, logged with its path, and its texts are
    embedded again: a corrupt vector is never returned. Shards of older versions have no
    ``.sum.json``; they are used after a shape check.
    """

    def __init__(self, root: Path | str, namespace: str):
        self.dir = Path(root) / "embeddings" / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index: dict[bytes, tuple[str, int]] = {}
        self._seen: set[str] = set()
        self._sums: dict[str, dict | None] = {}
        self._verified: set[str] = set()
        self.n_corrupt = 0

    def _refresh(self) -> None:
        for kf in sorted(self.dir.glob("*.keys.npy")):
            name = kf.name[: -len(".keys.npy")]
            if name in self._seen or name.startswith("."):
                continue
            sums = self._read_sums(name)
            if sums is None and (self.dir / f"{name}.sum.json").exists():
                continue  # unreadable checksum file: already quarantined
            try:
                if sums is not None and _sha256(kf) != sums["keys_sha256"]:
                    raise ValueError("keys checksum mismatch")
                keys = np.load(kf)
                if keys.ndim != 2 or keys.shape[1] != 32:
                    raise ValueError(f"keys have shape {keys.shape}, expected (n, 32)")
            except (OSError, ValueError, EOFError) as e:
                if sums is None and not (self.dir / f"{name}.vecs.npy").exists():
                    continue  # pragma: no cover - another writer is mid-rename
                self._quarantine(name, str(e))
                continue
            self._seen.add(name)
            self._sums[name] = sums
            for row, k in enumerate(keys):  # (n, 32) uint8: 'S32' would drop trailing NULs
                self._index.setdefault(k.tobytes(), (name, row))

    def _read_sums(self, name: str) -> dict | None:
        f = self.dir / f"{name}.sum.json"
        if not f.exists():
            return None
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError) as e:
            self._quarantine(name, f"checksum file unreadable ({e})")
            return None

    def _quarantine(self, name: str, why: str) -> None:
        """Move a bad shard's files aside (kept for inspection, never read again)."""
        self.n_corrupt += 1
        for suffix in ("vecs.npy", "keys.npy", "sum.json"):
            f = self.dir / f"{name}.{suffix}"
            if f.exists():
                os.replace(f, f.with_name(f.name + ".corrupt"))
        self._index = {k: v for k, v in self._index.items() if v[0] != name}
        self._seen.discard(name)
        logger.warning("embedding cache shard %s is corrupt (%s); moved aside as *.corrupt and "
                       "its texts will be embedded again. If this repeats, check the disk or "
                       "delete the folder %s.", self.dir / name, why, self.dir)

    def _vectors(self, name: str) -> np.ndarray | None:
        f = self.dir / f"{name}.vecs.npy"
        sums = self._sums.get(name)
        try:
            vecs = np.load(f, mmap_mode="r")
            if name not in self._verified:  # checked once per process and shard
                if sums is not None and _sha256(f) != sums["vecs_sha256"]:
                    raise ValueError("vectors checksum mismatch")
                rows = sums["rows"] if sums is not None else \
                    sum(1 for v in self._index.values() if v[0] == name)
                if vecs.ndim != 2 or vecs.shape[0] < rows or \
                        (sums is not None and list(vecs.shape) != sums["vecs_shape"]):
                    raise ValueError(f"vectors have shape {vecs.shape}")
        except (OSError, ValueError, EOFError) as e:
            self._quarantine(name, str(e))
            return None
        self._verified.add(name)
        return vecs

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Vectors for the keys already on disk (missing keys are absent from the result)."""
        hit, vecs = self.lookup(keys)
        return dict(zip([k for k, h in zip(keys, hit) if h], vecs))

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask (n,), (n_hit, d) float32 vectors of the hits in key order)."""
        self._refresh()
        found = [self._index.get(k) for k in keys]
        hit = np.array([f is not None for f in found], dtype=bool)
        pos = np.flatnonzero(hit)
        shard, names = pd.factorize(pd.Series([found[i][0] for i in pos], dtype=object))
        rows = np.array([found[i][1] for i in pos], dtype=np.int64)
        order = np.argsort(shard, kind="stable")
        cuts = np.flatnonzero(np.diff(shard[order])) + 1
        out: np.ndarray | None = None
        for sel in (np.split(order, cuts) if len(order) else []):
            vecs = self._vectors(names[shard[sel[0]]])
            if vecs is None:
                hit[pos[sel]] = False  # corrupt: these keys are embedded again by the caller
                continue
            if out is None:
                out = np.zeros((len(pos), vecs.shape[1]), dtype=np.float32)
            out[sel] = vecs[rows[sel]]
        if out is None:
            return hit, np.zeros((0, 0), dtype=np.float32)
        return hit, out[hit[pos]]

    def put_async(self, keys: Sequence[bytes], vecs: np.ndarray) -> None:
        """``put`` in a background thread (writing and hashing release the GIL, so the caller
        prepares its next chunk meanwhile). ``flush()`` waits and raises a failed write's error;
        shards are written one at a time, in call order."""
        from concurrent.futures import ThreadPoolExecutor

        if getattr(self, "_pool", None) is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-cache")
            self._pending = []
        self._pending.append(self._pool.submit(self.put, list(keys), np.array(vecs)))

    def flush(self) -> None:
        pending, self._pending = getattr(self, "_pending", []), []
        errors = [f.exception() for f in pending]
        for e in errors:
            if e is not None:
                raise e

    def put(self, keys: Sequence[bytes], vecs: np.ndarray) -> None:
        if len(keys) == 0:
            return
        name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        arrays = {"vecs": np.asarray(vecs, dtype=np.float32),
                  "keys": np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32)}
        sums = {"rows": int(len(keys)), "vecs_shape": list(arrays["vecs"].shape)}
        for suffix, arr in arrays.items():
            tmp = self.dir / f".{name}.{suffix}.tmp.npy"
            try:
                np.save(tmp, arr)
                sums[f"{suffix}_sha256"] = _sha256(tmp)
                os.replace(tmp, self.dir / f"{name}.{suffix}.npy")
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise OSError(e.errno, f"cannot write the embedding cache in {self.dir} "
                              f"({e.strerror}). Fix: free disk space there or set "
                              "proxy.cache_dir / $PDSELECT_CACHE to a folder with room; a "
                              "re-run resumes from the shards already written.") from e
        tmp = self.dir / f".{name}.sum.tmp"
        tmp.write_text(json.dumps(sums))
        os.replace(tmp, self.dir / f"{name}.sum.json")

    def __len__(self) -> int:
        self._refresh()
        return len(self._index)


def _part(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return len(b).to_bytes(8, "little") + b


def text_keys(encoder_id: str, kind: str, limits: str, inputs, responses) -> list[bytes]:
    """:func:`text_key` of many texts (``inputs`` None: no input), the same digests at a
    fraction of the Python calls: the constant parts are hashed once and copied, and an input
    shared by consecutive rows is hashed once."""
    base = hashlib.sha256(_part(encoder_id) + _part(kind) + _part(limits))
    out = []
    if inputs is None:
        inputs = [""] * len(responses)
    last, head = None, base
    for x, y in zip(inputs, responses):
        if x is not last:
            last, head = x, base.copy()
            head.update(_part(x))
        h = head.copy()
        b = y.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little") + b)
        out.append(h.digest())
    return out


def text_key(encoder_id: str, kind: str, limits: str, inp: str | None, resp: str) -> bytes:
    h = hashlib.sha256()
    for part in (encoder_id, kind, limits, inp if inp is not None else "", resp):
        b = part.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))  # length-prefixed: no ambiguity between parts
        h.update(b)
    return h.digest()
