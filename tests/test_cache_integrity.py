"""Embedding-cache corruption is detected (checksums) and repaired by re-embedding; a huge
response costs its kept tokens only; a full disk gives a clear message."""

from __future__ import annotations

import errno
import subprocess
import sys

import numpy as np
import pytest

from pdselect.reward.embed import EmbeddingCache, EmbeddingStore, Encoder, TextFramer
from tests.test_embed import make_tiny_bert

INPUTS = ["a question about cats", "what is rain", "how tall is a giraffe"]
RESPS = ["cats purr when content", "water that falls from clouds", "about five metres"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert_cache"))


def _store(tiny, cache):
    return EmbeddingStore(Encoder(str(tiny)), str(cache), 32, 32)


def _shard_files(cache, suffix):
    return sorted(cache.rglob(f"*.{suffix}"))


@pytest.mark.parametrize("damage", ["truncate_vecs", "empty_vecs", "overwrite_vecs",
                                    "truncate_keys", "garbage_sums"])
def test_damaged_shard_is_detected_moved_aside_and_recomputed(tiny, tmp_path, damage, caplog):
    cache = tmp_path / "cache"
    ref = _store(tiny, cache).embed(INPUTS, RESPS, "joint")
    vecs, = _shard_files(cache, "vecs.npy")
    keys, = _shard_files(cache, "keys.npy")
    sums, = _shard_files(cache, "sum.json")
    if damage == "truncate_vecs":
        vecs.write_bytes(vecs.read_bytes()[:-40])
    elif damage == "empty_vecs":
        vecs.write_bytes(b"")
    elif damage == "overwrite_vecs":  # same size, other numbers: only a checksum sees it
        arr = np.load(vecs)
        np.save(vecs, arr[::-1].copy())
    elif damage == "truncate_keys":
        keys.write_bytes(keys.read_bytes()[:100])
    else:
        sums.write_text("{not json")
    store = _store(tiny, cache)
    before = store.encoder.n_encoded
    with caplog.at_level("WARNING"):
        got = store.embed(INPUTS, RESPS, "joint")
    assert "is corrupt" in caplog.text and "*.corrupt" in caplog.text
    assert store.encoder.n_encoded - before == len(INPUTS)       # embedded again
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)     # a fresh, correct vector
    assert _shard_files(cache, "corrupt")                          # kept for inspection
    # the repaired cache is used as is next time
    again = _store(tiny, cache)
    again.embed(INPUTS, RESPS, "joint")
    assert again.encoder.n_encoded == 0


def test_disk_full_gives_a_clear_message(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path, "ns")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError, match="free disk space.*proxy.cache_dir"):
        cache.put([b"k" * 32], np.zeros((1, 4)))
    assert not list((tmp_path / "embeddings" / "ns").iterdir())  # no half-written shard


HUGE_SCRIPT = """
import resource, sys
from pdselect.reward.embed import Encoder, TextFramer
fr = TextFramer(Encoder(sys.argv[1]).tokenizer, 16, 8)
huge = "word " * 2_000_000                                # 10 MB
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids = fr.joint_ids([huge], [huge])[0]
n = int(fr.n_tokens([huge])[0])
print(len(ids), n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) // 1024)
"""


def test_a_10mb_response_costs_only_its_kept_tokens(tiny):
    """In a fresh process (peak RSS is per process): tokenising the whole text took 1.4 GB."""
    out = subprocess.run([sys.executable, "-c", HUGE_SCRIPT, str(tiny)], capture_output=True,
                         text=True, check=True).stdout.split()
    n_ids, n_tokens, grown_mb = map(int, out)
    assert n_ids == 1 + 16 + 1 + 8 + 1
    assert 30_000 <= n_tokens <= 200_000   # counted over the first LENGTH_CHARS characters
    assert grown_mb < 300, grown_mb
