"""Fast token ids for many texts, and token-id tables in one flat array (CSR).

    ids = FastIds(hf_tokenizer)
    flat, lens = ids.encode(["a text", "another"])      # int32 ids, one length per text
    table = TokenTable(ids); starts, lens = table.slots(texts)   # each string tokenised once

Why: on a 2-core CPU the score path's cost without the encoder forward was mostly the
tokenizer (docs/BENCHMARKS.md section 8): the transformers wrapper converts every encoding to
Python objects (~40 us a text), and a BERT tokenizer spends most of its time normalising and
pre-tokenising (splitting on spaces and punctuation, keeping character offsets nobody reads).

For a BERT WordPiece tokenizer (all-MiniLM-L6-v2, the default encoder) a text made only of
printable ASCII characters (plus tab / newline / CR) is tokenised as: lower-case (when the
normaliser does), split into runs of letters/digits and single punctuation characters
(exactly BertPreTokenizer's split for ASCII), and each WORD's WordPiece ids are looked up in a
word cache filled by the real tokenizer (a word is tokenised alone, which gives the same ids:
WordPiece works word by word). Ids are identical to the tokenizer's (tested on every text of
the bundled sets); any other text, and any other tokenizer, goes through the Rust tokenizer's
``encode_batch`` directly.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from typing import Sequence

import numpy as np

#: texts made only of these characters take the word-cache path
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]")
#: BertPreTokenizer on ASCII: runs of letters/digits; every ASCII punctuation char alone; and
#: SEP, the separator the word path joins texts with (never inside a plain text)
SEP = "\x00"
_WORDS_SEP = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]|\x00")
#: the word cache is cleared when it holds this many words (memory stays bounded)
MAX_WORDS = 2_000_000


def _backend(tok):
    """A copy of the Rust tokenizer behind ``tok`` without truncation or padding."""
    from tokenizers import Tokenizer

    rt = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    rt.no_truncation()
    rt.no_padding()
    return rt


def _wordpiece_lowercase(rt) -> bool | None:
    """True / False (the normaliser's lowercase) for a BERT WordPiece tokenizer whose ASCII
    behaviour the word path reproduces; None for any other tokenizer."""
    spec = json.loads(rt.to_str())
    norm, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec["model"]
    if model.get("type") != "WordPiece" or pre.get("type") != "BertPreTokenizer":
        return None
    if norm.get("type") != "BertNormalizer":
        return None
    return bool(norm.get("lowercase", True))


class _Grow:
    """A growable 1-d numpy array (amortised doubling)."""

    def __init__(self, dtype, size: int = 1 << 16):
        self.a, self.n = np.zeros(size, dtype=dtype), 0

    def extend(self, values: np.ndarray) -> int:
        need = self.n + len(values)
        if need > len(self.a):
            grown = np.zeros(max(need, 2 * len(self.a)), dtype=self.a.dtype)
            grown[: self.n] = self.a[: self.n]
            self.a = grown
        self.a[self.n: need] = values
        start, self.n = self.n, need
        return start


class FastIds:
    """Token ids (no special tokens, no truncation) of many texts; see the module docstring.
    A tokenizer without a Rust backend (a "slow" one) is called as is."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.rt = _backend(tokenizer) if getattr(tokenizer, "is_fast", False) else None
        self.lower = _wordpiece_lowercase(self.rt) if self.rt is not None else None
        # added tokens ([CLS], [SEP], ...) are matched in the raw text before pre-tokenising:
        # a text holding one (any case) takes the tokenizer's own path
        added = [t["content"] for t in json.loads(self.rt.to_str()).get("added_tokens", [])] \
            if self.rt is not None else []
        self.special = re.compile("|".join(map(re.escape, added)), re.I) if added else None
        self._clear_words()

    def _clear_words(self) -> None:
        # word id 0 is the text separator; a word's ids are wflat[wstart[w]: + wlen[w]]
        self.wid: dict[str, int] = {SEP: 0}
        self.wstart, self.wlen, self.wflat = _Grow(np.int64), _Grow(np.int64), _Grow(np.int32)
        self.wstart.extend(np.zeros(1, np.int64))
        self.wlen.extend(np.zeros(1, np.int64))
        self.n_word_misses = getattr(self, "n_word_misses", 0)

    def _rust(self, texts: Sequence[str]) -> list[list[int]]:
        if self.rt is None:
            return self.tok(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [e.ids for e in self.rt.encode_batch_fast(list(texts), add_special_tokens=False)]

    def _add_words(self, words: list[str]) -> None:
        got = self._rust(words)
        lens = np.array([len(x) for x in got], dtype=np.int64)
        start = self.wflat.extend(np.fromiter(chain.from_iterable(got), np.int32, int(lens.sum())))
        self.wstart.extend(start + np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64))
        self.wlen.extend(lens)
        self.wid.update(zip(words, range(len(self.wid), len(self.wid) + len(words))))
        self.n_word_misses += len(words)

    def _plain(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The word path for texts of printable ASCII: ONE regex pass over all texts joined by
        a separator, words -> cached word ids (new words tokenised alone), then the ids."""
        big = SEP.join(texts)
        words = _WORDS_SEP.findall(big.lower() if self.lower else big)
        new = list(set(words).difference(self.wid))
        if new:
            if len(self.wid) + len(new) > MAX_WORDS:
                self._clear_words()
                new = list(set(words).difference(self.wid))
            self._add_words(new)
        wids = np.fromiter(map(self.wid.__getitem__, words), np.int64, len(words))
        wlen = self.wlen.a[wids]
        bounds = np.flatnonzero(wids == 0)                  # one separator between texts
        text_of = np.zeros(len(wids), dtype=np.int64)
        text_of[bounds] = 1
        text_of = np.cumsum(text_of)
        lens = np.bincount(text_of, weights=wlen, minlength=len(texts)).astype(np.int64)
        flat, _ = concat_segments([(self.wflat.a, self.wstart.a[wids], wlen)], len(wids))
        return flat, lens

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat int32 ids of all texts, in order; int64 token count of each text)."""
        texts = list(texts)
        if not texts:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        plain = ([_NOT_PLAIN.search(t) is None for t in texts] if self.lower is not None
                 else [False] * len(texts))
        if self.special is not None and any(plain) and self.special.search("\n".join(texts)):
            plain = [ok and self.special.search(t) is None for t, ok in zip(texts, plain)]
        if all(plain):
            return self._plain(texts)
        lens = np.zeros(len(texts), dtype=np.int64)
        other = [i for i, ok in enumerate(plain) if not ok]
        got = self._rust([texts[i] for i in other])
        olens = np.array([len(x) for x in got], dtype=np.int64)
        oflat = np.fromiter(chain.from_iterable(got), np.int32, int(olens.sum()))
        starts = np.zeros(len(texts), dtype=np.int64)
        lens[other] = olens
        starts[other] = np.concatenate([[0], np.cumsum(olens)[:-1]])
        fast = [i for i, ok in enumerate(plain) if ok]
        if fast:
            pflat, plens = self._plain([texts[i] for i in fast])
            lens[fast] = plens
            starts[fast] = len(oflat) + np.concatenate([[0], np.cumsum(plens)[:-1]])
            oflat = np.concatenate([oflat, pflat])
        return concat_segments([(oflat, starts, lens)], len(texts))[0], lens


class TokenTable:
    """Each distinct string tokenised once; ids kept in one growing flat int32 array.

    ``slots(texts)`` -> (starts, lengths) of each text's ids in ``flat``. Bounded by the caller:
    ``clear()`` between calls that share no strings."""

    def __init__(self, ids: FastIds):
        self.ids = ids
        self.clear()

    def clear(self) -> None:
        self.flat = np.zeros(1 << 16, dtype=np.int32)
        self.used = 0
        self.slot: dict[str, tuple[int, int]] = {}
        self.n_tokenised = 0

    def _append(self, flat: np.ndarray) -> int:
        need = self.used + len(flat)
        if need > len(self.flat):
            grown = np.zeros(max(need, 2 * len(self.flat)), dtype=np.int32)
            grown[: self.used] = self.flat[: self.used]
            self.flat = grown
        self.flat[self.used: need] = flat
        start, self.used = self.used, need
        return start

    def slots(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        slot = self.slot
        new = list(dict.fromkeys(t for t in texts if t not in slot))
        if new:
            flat, lens = self.ids.encode(new)
            start = self._append(flat)
            starts = start + np.concatenate([[0], np.cumsum(lens)[:-1]])
            slot.update(zip(new, zip(starts.tolist(), lens.tolist())))
            self.n_tokenised += len(new)
        got = [slot[t] for t in texts]
        arr = np.array(got, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]


def concat_segments(segments: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row r = segment 0's ids [starts[r], starts[r] + lens[r]) + segment 1's ... (vectorised).

    ``segments``: (flat, starts (n,), lens (n,)) each. Returns (flat int32, offsets (n + 1,))."""
    total = np.zeros(n, dtype=np.int64)
    for _, _, ln in segments:
        total += ln
    offsets = np.concatenate([[0], np.cumsum(total)]).astype(np.int64)
    out = np.empty(int(offsets[-1]), dtype=np.int32)
    col = offsets[:-1].copy()
    for flat, st, ln in segments:
        tot = int(ln.sum())
        if tot:
            within = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(ln) - ln, ln)
            out[np.repeat(col, ln) + within] = flat[np.repeat(st, ln) + within]
        col += ln
    return out, offsets


def constant(ids: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same ids on every one of ``n`` rows, as a segment for :func:`concat_segments`."""
    return (np.asarray(ids, dtype=np.int32), np.zeros(n, np.int64),
            np.full(n, len(ids), np.int64))


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
#: a framer's token table is emptied before a call once it holds this many ids (memory bound)
MAX_TABLE_TOKENS = 40_000_000


class TextFramer:
    """Tokenises and truncates texts the same way for every backend.

    input -> its last ``max_input_tokens`` tokens (left truncation), response -> its first
    ``max_response_tokens`` tokens; ``joint_ids`` / ``response_ids`` add the special tokens
    (``pre``, ``sep``, ``suf``). Texts are cut by characters before tokenising
    (``CHARS_PER_TOKEN``), which never changes the kept tokens of ordinary text. Every distinct
    string is tokenised once per framer (a :class:`TokenTable`, emptied when it grows past
    ``MAX_TABLE_TOKENS``); ``n_tokenised`` counts strings actually tokenised. ``*_csr`` give
    the framed rows as one flat int32 array + row offsets (no Python list per token).
    """

    def __init__(self, tokenizer, max_input_tokens: int, max_response_tokens: int):
        self.tok = tokenizer
        self.max_in, self.max_resp = int(max_input_tokens), int(max_response_tokens)
        self.pre, self.sep, self.suf = special_ids(tokenizer)
        self.table = TokenTable(FastIds(tokenizer))
        self._n_before = 0

    @property
    def n_tokenised(self) -> int:
        return self._n_before + self.table.n_tokenised

    def _fresh(self) -> TokenTable:
        if self.table.used > MAX_TABLE_TOKENS:
            self._n_before += self.table.n_tokenised
            self.table.clear()
        return self.table

    def _lists(self, flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
        ids = flat.tolist()
        return [ids[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of ``texts`` (no special tokens, no truncation)."""
        texts = list(texts)
        st, ln = self._fresh().slots(texts)
        n = len(texts)
        return self._lists(*concat_segments([(self.table.flat, st, ln)], n))

    def n_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Untruncated token counts (of the first LENGTH_CHARS characters; memoised: length
        metrics ask for the same texts often)."""
        memo = self.__dict__.setdefault("_n_tokens", {})
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            _, lens = self.table.ids.encode([t[:LENGTH_CHARS] for t in todo])
            memo.update(zip(todo, lens.tolist()))
        return np.array([memo[t] for t in texts], dtype=np.int64)

    def _head(self, texts: Sequence[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
        cut = CHARS_PER_TOKEN * max(limit, 1)
        st, ln = self.table.slots([t[:cut] for t in texts])
        return st, np.minimum(ln, max(limit, 0))

    def _tail(self, texts: Sequence[str], limit: int) -> tuple[np.ndarray, np.ndarray]:
        if limit <= 0:
            return np.zeros(len(texts), np.int64), np.zeros(len(texts), np.int64)
        cut = CHARS_PER_TOKEN * limit
        st, ln = self.table.slots([t[-cut:] for t in texts])
        keep = np.minimum(ln, limit)
        return st + (ln - keep), keep

    def joint_csr(self, inputs: Sequence[str], responses: Sequence[str]):
        """``pre + input tail + sep + response head + suf`` of each row: (flat, offsets)."""
        n = len(responses)
        self._fresh()
        xs, xl = self._tail(inputs, self.max_in)
        ys, yl = self._head(responses, self.max_resp)
        flat = self.table.flat  # read after both calls: the table may have grown
        return concat_segments([constant(self.pre, n), (flat, xs, xl), constant(self.sep, n),
                                (flat, ys, yl), constant(self.suf, n)], n)

    def response_csr(self, responses: Sequence[str]):
        n = len(responses)
        self._fresh()
        ys, yl = self._head(responses, self.max_resp)
        return concat_segments([constant(self.pre, n), (self.table.flat, ys, yl),
                                constant(self.suf, n)], n)

    def joint_ids(self, inputs: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        return self._lists(*self.joint_csr(list(inputs), list(responses)))

    def response_ids(self, responses: Sequence[str]) -> list[list[int]]:
        return self._lists(*self.response_csr(list(responses)))
