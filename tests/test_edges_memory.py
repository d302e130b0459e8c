"""Issue 17, class 6: the aggregate stage's memory must not depend on the longest text. One
50 KB response in a 24k-pair file made it take 4.9 GB: the pair lengths were computed on a
fixed-width numpy string array of n_pairs x the longest text (``np.char.str_len``)."""

import tracemalloc

import numpy as np
import pandas as pd

from pdselect.aggregate.pairs import build_pairs
from pdselect.aggregate.stream import input_chunks
from pdselect.config import AggregateConfig
from pdselect.data.rejects import RejectLog
from pdselect.data.schema import RatedTable


def _rated(long_chars: int) -> RatedTable:
    rng = np.random.default_rng(0)
    rows = [{"input_id": f"i{i}", "input": f"question {i}", "response_id": f"i{i}:r{j}",
             "response": f"answer {j} of {i}", "a": float(rng.integers(1, 6)),
             "b": float(rng.integers(1, 6))} for i in range(60) for j in range(6)]
    rows[0]["response"] = "x" * long_chars  # ONE long response
    return RatedTable(pd.DataFrame(rows), ["a", "b"], {"a": (1, 5), "b": (1, 5)}, False,
                      "generic")


def _peak(rated: RatedTable) -> tuple[int, pd.DataFrame]:
    tracemalloc.start()
    try:
        pairs = build_pairs(rated, AggregateConfig(test_fraction=0.0), 0, RejectLog("t"))
        return tracemalloc.get_traced_memory()[1], pairs
    finally:
        tracemalloc.stop()


def test_aggregate_memory_does_not_grow_with_the_longest_text():
    base, short = _peak(_rated(10))
    big, long_ = _peak(_rated(200_000))  # 0.2 M chars: the old path made ~0.8 MB per pair
    # the one long text itself (and its few pairs' copies) may cost a few MB, not n_pairs x it
    assert big - base < 8 * 2**20, (base, big)
    assert len(short) == len(long_) > 500
    first = long_[(long_["chosen_id"] == "i0:r0") | (long_["rejected_id"] == "i0:r0")]
    lens = np.where(first["chosen_id"] == "i0:r0", first["len_chosen"], first["len_rejected"])
    assert (lens == 200_000).all()  # lengths still right
    assert long_["len_chosen"].dtype == np.int64


def test_input_chunks_are_object_strings_not_fixed_width():
    ids = np.array(["a", "b" * 100_000, "a", "c"], dtype=object)
    chunks = input_chunks(ids, 2)
    assert all(c.dtype == object for c in chunks)
    assert [list(c) for c in chunks] == [["b" * 100_000, "c"], ["a"]]  # by size, then id
