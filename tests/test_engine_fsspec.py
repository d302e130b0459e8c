"""The sharded engine on an fsspec object store (the built-in memory:// filesystem, no network)
== the engine on a local path: scores, resume, streamed selection, refusals."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdselect.errors import StageError
from pdselect.score.engine import pd_pass, read_scores, score_sharded
from pdselect.score.sharded import GAPS_DIR, PLAN_FILE
from pdselect.score import storage
from pdselect.score.testing import HashGaps
from pdselect.select.threshold import select_parts

from test_scale_sharded import ASPECTS, Boom, DiesAfter, make_pairs, write_shards

MEM = fsspec.filesystem("memory")


@pytest.fixture()
def mem_root():
    """A fresh memory:// folder, removed afterwards (the memory store is process-global)."""
    root = f"/pdselect-test-{uuid.uuid4().hex}"
    yield f"memory://{root}"
    if MEM.exists(root):
        MEM.rm(root, recursive=True)


@pytest.fixture()
def pairs(tmp_path, mem_root):
    """The same pair shards on a local folder and on memory:// (byte-identical files)."""
    df = make_pairs(250, seed=11)
    local = write_shards(df, tmp_path / "in", [90, 3, 0, 157])
    for f in sorted(local.glob("*.parquet")):
        MEM.pipe_file(f"{mem_root[len('memory://'):]}/in/{f.name}", f.read_bytes())
    return local, f"{mem_root}/in"


def _assert_same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["pair_id"].tolist() == b["pair_id"].tolist()
    assert a["aspect"].tolist() == b["aspect"].tolist()
    assert list(a.columns) == list(b.columns)
    for c in a.columns.drop(["pair_id", "aspect"]):
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=1e-12)


def test_memory_store_scores_equal_local(pairs, tmp_path, mem_root):
    local_in, mem_in = pairs
    score_sharded(local_in, HashGaps(4), ASPECTS, tmp_path / "out", shard_size=40)
    q_local = pd_pass(tmp_path / "out", ASPECTS, 0.9)
    out = f"{mem_root}/out"
    s = score_sharded(mem_in, HashGaps(4), ASPECTS, out, shard_size=40)
    assert s["n_shards"] == 7 and s["n_shards_scored_now"] == 7
    q_mem = pd_pass(out, ASPECTS, 0.9)
    assert q_mem.keys() == q_local.keys()
    np.testing.assert_allclose(list(q_mem.values()), list(q_local.values()), rtol=1e-12)
    _assert_same_scores(read_scores(tmp_path / "out"), read_scores(out))
    # the plan pins the inputs as URIs, so a resume on the same store matches
    plan = storage.read_json(storage.resolve(out) / PLAN_FILE)
    assert all(f.startswith("memory://") for f in plan["files"]) and len(plan["files"]) == 4
    # each part a whole object, no temp leftovers on the store
    names = [p.rsplit("/", 1)[-1] for p in MEM.find(mem_root[len("memory://"):])]
    assert not [n for n in names if n.endswith(".tmp")]


def test_memory_store_resumes_without_redoing_shards(pairs, tmp_path, mem_root):
    _, mem_in = pairs
    ref = f"{mem_root}/ref"
    score_sharded(mem_in, HashGaps(4), ASPECTS, ref, shard_size=40)
    pd_pass(ref, ASPECTS, 0.9)

    out = f"{mem_root}/out"
    with pytest.raises(Boom):                      # dies on the 3rd shard
        score_sharded(mem_in, DiesAfter(2), ASPECTS, out, shard_size=40)
    done = storage.glob(storage.resolve(out) / GAPS_DIR, "part-*.parquet")
    assert [p.name for p in done] == ["part-00000.parquet", "part-00001.parquet"]
    resumed = DiesAfter(10**9)
    s = score_sharded(mem_in, resumed, ASPECTS, out, shard_size=40)
    assert resumed.calls == 5 and s["n_shards_resumed"] == 2 and s["n_shards_scored_now"] == 5
    pd_pass(out, ASPECTS, 0.9)
    got = read_scores(out)
    assert got["pair_id"].is_unique
    _assert_same_scores(read_scores(ref), got)
    again = DiesAfter(0)                           # a finished run re-run does nothing
    assert score_sharded(mem_in, again, ASPECTS, out, shard_size=40)["n_shards_scored_now"] == 0


def test_memory_store_resume_with_other_plan_is_refused(pairs, mem_root):
    _, mem_in = pairs
    out = f"{mem_root}/out"
    score_sharded(mem_in, HashGaps(4), ASPECTS, out, shard_size=40)
    with pytest.raises(StageError, match="shard_size"):
        score_sharded(mem_in, HashGaps(4), ASPECTS, out, shard_size=50)


def test_pd_pass_on_memory_store_refuses_a_run_killed_before_any_part(pairs, mem_root):
    _, mem_in = pairs
    out = f"{mem_root}/out"
    with pytest.raises(Boom):       # no object under scores/ yet: only _plan.json says started
        score_sharded(mem_in, DiesAfter(0), ASPECTS, out, shard_size=40)
    with pytest.raises(StageError, match="incomplete"):
        pd_pass(out, ASPECTS, 0.9)


def test_select_parts_on_memory_store_equals_local(tmp_path, mem_root):
    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"pair_id": [f"p{i:04d}" for i in rng.permutation(n)],
                       "aspect": rng.choice(ASPECTS, n),
                       "pd": np.round(rng.normal(size=n), 1)})   # many ties
    (tmp_path / "parts").mkdir()
    for j, lo in enumerate(range(0, n, 50)):
        t = pa.Table.from_pandas(df.iloc[lo:lo + 50], preserve_index=False)
        pq.write_table(t, tmp_path / "parts" / f"part-{j:05d}.parquet")
        storage.write_table(storage.resolve(f"{mem_root}/parts/part-{j:05d}.parquet"), t)
    for strat in (None, "aspect"):
        a = select_parts(tmp_path / "parts", tmp_path / "sel", "pd", budget=0.3,
                         stratify_by=strat)
        b = select_parts(f"{mem_root}/parts", f"{mem_root}/sel", "pd", budget=0.3,
                         stratify_by=strat)
        assert a == b
        sel_a = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "sel")
                                                               .glob("part-*.parquet"))])
        sel_b = pd.concat([storage.read_table(p).to_pandas() for p in
                           storage.glob(storage.resolve(f"{mem_root}/sel"), "part-*.parquet")])
        pd.testing.assert_frame_equal(sel_a, sel_b, check_exact=True)
        assert storage.read_json(storage.resolve(f"{mem_root}/sel/meta.json")) == a


def test_unknown_protocol_names_the_uri(tmp_path):
    with pytest.raises(StageError, match="nosuchfs://bucket/x: nosuchfs:// is not a filesys"):
        score_sharded("nosuchfs://bucket/x", HashGaps(4), ASPECTS, tmp_path / "out")
    with pytest.raises(StageError, match="nosuchfs://bucket/out"):
        pd_pass("nosuchfs://bucket/out", ASPECTS, 0.9)


def test_missing_filesystem_package_names_it(monkeypatch):
    from fsspec.registry import known_implementations

    monkeypatch.setitem(known_implementations, "fakestore",
                        {"class": "fakestore_pkg_missing.FakeFS", "err": "Install it"})
    with pytest.raises(StageError, match="(?s)fakestore://b/pairs.*pip install "
                                         "fakestore_pkg_missing"):
        storage.resolve("fakestore://b/pairs")


def test_local_and_file_uris_stay_pathlib(tmp_path):
    assert storage.resolve(tmp_path) == tmp_path
    assert storage.resolve(str(tmp_path)) == tmp_path
    assert storage.resolve(f"file://{tmp_path}") == tmp_path
    r = storage.resolve("memory://bucket/a") / "b.parquet"
    assert isinstance(r, storage.Remote) and r.name == "b.parquet"
    assert str(r) == "memory:///bucket/a/b.parquet"


def test_ray_engine_refuses_object_store(tmp_path, mem_root):
    pytest.importorskip("ray")
    from pdselect.score.ray_engine import score_sharded_ray
    from pdselect.score.testing import HashGapsFactory

    # refused before Ray starts: no cluster is needed for the message
    with pytest.raises(StageError, match="(?s)memory://.*rename.*score.engine=local.*mount"):
        score_sharded_ray(tmp_path, HashGapsFactory(4), ASPECTS, f"{mem_root}/out")
    with pytest.raises(StageError, match="(?s)Ray engine needs a local or shared POSIX"):
        score_sharded_ray(f"{mem_root}/in", HashGapsFactory(4), ASPECTS, tmp_path / "o")
