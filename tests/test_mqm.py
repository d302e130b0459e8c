"""The mqm reader: hand-computed per-aspect scores on small fixtures in both upstream layouts
(plain, .gz, .tar.gz), bad rows counted, the bundled TED sets' counts, and the aggregate stage.

Fixtures (tests/fixtures/mqm/), weights Major 5, Minor 1, Minor Fluency/Punctuation 0.1,
Non-translation 25 (every aspect), Neutral 0, Other -> overall only, Source error -> nowhere:

ted_sample.tsv (TED layout, with comment column)
  talk.1:1 sysA  Accuracy Major 5, Fluency/Punctuation Minor 0.1, Style Minor 1 -> -5, -0.1, -1;
                 overall -6.1
           sysB  No-error -> 0 everywhere
           ref-A Fluency/Punctuation MAJOR -> fluency -5 (standard weight); overall -5
           sysC  Terminology Minor 1, Other Minor 1, Source error Major -> terminology -1;
                 overall -2
           sysD  a row with a stray tab (11 fields) -> rejected, sysD's annotation dropped
  talk.1:2 sysA  Locale Minor -> locale -1, overall -1; sysC gives the SAME text "Guten Morgen."
                 with a Neutral error (0): merged, locale (-1 + 0) / 2 = -0.5, overall -0.5
           sysB  Non-translation! Major -> -25 on every aspect and overall
           sysE  severity "Critcal" -> rejected (and its No-error row dropped with it)
           sysF  empty target -> rejected
general_sample.tsv (general-MT layout, metadata column, several raters)
  news_1:1 sysA  rater1 Accuracy Major 5; rater2 Accuracy Minor 1 + Fluency/Punctuation Minor
                 0.1 -> accuracy (-5 - 1) / 2 = -3, fluency -0.05, overall (-5 - 1.1) / 2 = -3.05
           sysB  rater1 No-error (+ a HOTW-test row, skipped); rater2 Style Major 5 -> style
                 -2.5, overall -2.5
           refA  Terminology Minor -> -1
  news_1:2 sysA  No-error -> 0; sysB rater1 Fluency/Grammar Minor -> fluency -1 (rater2 has only
                 a HOTW-test row: not a rating, not averaged in as a zero)
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from pdselect.aggregate.pairs import aggregate, build_pairs
from pdselect.config import AggregateConfig, DataConfig
from pdselect.data import read_source
from pdselect.data.mqm import BUNDLED, is_reference, read_mqm_file
from pdselect.errors import InputError
from pdselect.data.rejects import RejectLog
from pdselect.data.schema import delta_col

FIX = Path(__file__).parent / "fixtures" / "mqm"
TED, GENERAL = FIX / "ted_sample.tsv", FIX / "general_sample.tsv"
A5 = ["accuracy", "fluency", "style", "terminology", "locale"]
TED_EXPECTED = {  # response_id -> (accuracy, fluency, style, terminology, locale, overall)
    "talk.1:1:sysA": (-5, -0.1, -1, 0, 0, -6.1),
    "talk.1:1:sysB": (0, 0, 0, 0, 0, 0),
    "talk.1:1:ref-A": (0, -5, 0, 0, 0, -5),
    "talk.1:1:sysC": (0, 0, 0, -1, 0, -2),
    "talk.1:2:sysA": (0, 0, 0, 0, -0.5, -0.5),
    "talk.1:2:sysB": (-25, -25, -25, -25, -25, -25),
}
GENERAL_EXPECTED = {  # (accuracy, fluency, style, terminology, overall)
    "news_1:1:sysA": (-3, -0.05, 0, 0, -3.05),
    "news_1:1:sysB": (0, 0, -2.5, 0, -2.5),
    "news_1:1:refA": (0, 0, 0, -1, -1),
    "news_1:2:sysA": (0, 0, 0, 0, 0),
    "news_1:2:sysB": (0, -1, 0, 0, -1),
}


def read(path="", source="mqm", **kw):
    rejects = RejectLog("ingest")
    return read_source(DataConfig(source=source, path=str(path), **kw), rejects), rejects


def scores(table, cols):
    df = table.df.set_index("response_id")
    return {rid: tuple(round(float(v), 10) for v in df.loc[rid, cols]) for rid in df.index}


def gz(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes()))
    return dst


def targz(dst: Path, members: dict[str, Path]) -> Path:
    with tarfile.open(dst, "w:gz") as tar:
        for name, src in members.items():
            data = src.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


# ============================================================================ fixtures
def test_ted_layout_hand_computed_scores():
    t, rej = read(TED)
    assert t.aspects == A5 and t.has_overall and t.source == "mqm"
    assert scores(t, A5 + ["overall"]) == TED_EXPECTED
    assert t.scales == {c: (-25.0, 0.0) for c in A5 + ["overall"]}
    df = t.df.set_index("response_id")
    assert df.loc["talk.1:1:sysA", "response"] == "Hallo Welt."          # <v> tags stripped
    assert df.loc["talk.1:2:sysA", "input"] == "Good morning."           # in the source too
    assert df.loc["talk.1:1:sysA", "input_id"] == "talk.1:1"


def test_ted_layout_bad_rows_counted_with_file_line_field():
    _, rej = read(TED)
    assert rej.counts() == {
        "rater's annotation of the item has a rejected row (its score would be incomplete): "
        "dropped": 3,
        "identical translation by several systems: merged into one response (scores averaged)": 1,
        "missing target": 1, "unknown severity": 1, "wrong column count (expected 10, got 11)": 1}
    by = {i["reason"]: i for i in rej.items}
    assert by["wrong column count (expected 10, got 11)"]["line"] == 11
    sev = by["unknown severity"]
    assert (sev["file"], sev["line"], sev["field"], sev["value"]) == (str(TED), 15, "severity",
                                                                      "Critcal")
    assert (by["missing target"]["line"], by["missing target"]["field"]) == (17, "target")
    dropped = {(i["record"]["system"], i["line"]) for i in rej.items
               if i["reason"].startswith("rater's annotation")}
    assert dropped == {("sysD", 11), ("sysE", 15), ("sysF", 17)}
    merged = by["identical translation by several systems: merged into one response (scores "
                "averaged)"]
    assert merged["record"] == {"input_id": "talk.1:2", "systems": ["sysA", "sysC"]}


def test_general_layout_raters_averaged_and_hotw_skipped():
    t, rej = read(GENERAL)
    aspects = ["accuracy", "fluency", "style", "terminology"]
    assert t.aspects == aspects                       # no locale error: aspect left out
    assert scores(t, aspects + ["overall"]) == GENERAL_EXPECTED
    assert t.df.set_index("response_id").loc["news_1:1:sysA", "input"] == "你好。"
    assert rej.counts() == {"HOTW-test row (rater attention check, not a rating): skipped": 2}
    assert rej.items[0]["lines"] == [7, 11] and rej.items[0]["file"] == str(GENERAL)


@pytest.mark.parametrize("kind", ["gz", "tar.gz", "folder"])
def test_compressed_and_archived_inputs_read_the_same(tmp_path, kind):
    if kind == "gz":
        path = gz(TED, tmp_path / "ted_sample.tsv.gz")
    elif kind == "tar.gz":
        path = targz(tmp_path / "mqm.tar.gz", {"wmt/ted/ende/ted_sample.tsv": TED})
    else:
        shutil.copy(TED, tmp_path / "ted_sample.tsv")
        path = tmp_path
    t, rej = read(path)
    assert scores(t, A5 + ["overall"]) == TED_EXPECTED
    assert rej.total == 7
    if kind == "tar.gz":
        assert {i["file"] for i in rej.items} == {f"{path}::wmt/ted/ende/ted_sample.tsv"}


def test_several_files_keep_their_inputs_apart(tmp_path):
    general_gz = gz(GENERAL, tmp_path / "g.gz")
    path = targz(tmp_path / "both.tar.gz", {"a/ted_sample.tsv": TED,
                                            "b/general_sample.tsv.gz": general_gz})
    t, _ = read(path)
    got = scores(t, ["accuracy", "overall"])
    assert got["ted_sample/talk.1:1:sysA"] == (-5, -6.1)
    assert got["general_sample/news_1:1:sysA"] == (-3, -3.05)
    assert len(t.df) == len(TED_EXPECTED) + len(GENERAL_EXPECTED)


def test_references_dropped_on_request_and_counted():
    t, rej = read(GENERAL, mqm_references="drop")
    assert "news_1:1:refA" not in set(t.df["response_id"]) and len(t.df) == 4
    item = [i for i in rej.items if i["reason"].startswith("human reference dropped")][0]
    assert item["count"] == 1 and item["systems"] == {"refA": 1}
    assert all(is_reference(s) for s in ["ref", "refA", "refB", "ref-A", "ref.B", "Human-B",
                                         "Human-P", "human"])
    assert not any(is_reference(s) for s in ["Facebook-AI", "metricsystem1", "Online-W",
                                             "refined-MT", "DIDI-NLP"])


def test_weights_configurable_and_merged_over_defaults(tmp_path):
    t, _ = read(GENERAL, mqm_weights={"Major": 10})             # Minor keeps its default 1
    assert scores(t, ["accuracy", "overall"])["news_1:1:sysA"] == (-5.5, -5.55)  # (-10-1.1)/2
    assert t.scales["accuracy"] == (-50.0, 0.0)                  # 5 errors x Major 10
    crit = tmp_path / "crit.tsv"
    crit.write_text(GENERAL.read_text(encoding="utf-8").replace("\tMajor\t", "\tCritical\t"),
                    encoding="utf-8")
    _, rej = read(crit)
    assert rej.counts()["unknown severity"] == 2
    t, rej = read(crit, mqm_weights={"Critical": 10, "Minor:Fluency/Punctuation": 0.5})
    assert "unknown severity" not in rej.counts()
    assert scores(t, ["accuracy", "fluency"])["news_1:1:sysA"] == (-5.5, -0.25)


def test_unreadable_layout_is_an_input_error_naming_file_header_and_fix(tmp_path):
    with pytest.raises(InputError) as e:
        read(FIX / "bad_header.tsv")
    msg = str(e.value)
    assert "bad_header.tsv:1" in msg and "system doc doc_id seg_id rater" in msg
    assert "docSegId globalSegId" in msg and "Fix:" in msg
    broken = tmp_path / "x.tsv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="not a readable gzip file"):
        read(broken)
    with pytest.raises(InputError, match="file not found"):
        read(tmp_path / "missing.tsv")


def test_strict_raises_on_the_first_bad_row():
    with pytest.raises(InputError) as e:
        read(TED, strict=True)
    assert e.value.line == 11 and "wrong column count" in str(e.value)


def test_max_rows_drops_an_annotation_it_cuts():
    t, rej = read(TED, max_rows=6)         # lines 2-7: stops inside sysC's 3 rows
    assert rej.counts() == {"not read: beyond data.max_rows=6": 10,
                            "rater's annotation of the item cut by data.max_rows: dropped": 1}
    assert set(t.df["response_id"]) == {"talk.1:1:sysA", "talk.1:1:sysB", "talk.1:1:ref-A"}


def test_aggregate_labels_no_tied_aspect():
    t, _ = read(TED)
    rej = RejectLog("aggregate")
    pairs = build_pairs(t, AggregateConfig(), 0, rej)
    # talk.1:1 has 4 responses (6 pairs), talk.1:2 has 2 (1 pair): none is tied on all aspects
    assert len(pairs) == 7
    for _, p in pairs.iterrows():
        assert p[delta_col(p["aspect"])] > 0          # the label's aspect decides the pair
    sysb = pairs[(pairs["chosen_id"] == "talk.1:1:sysB")
                 & (pairs["rejected_id"] == "talk.1:1:sysC")]
    assert sysb["aspect"].tolist() == ["terminology"]  # the only aspect that differs


# ============================================================================ bundled
@pytest.mark.parametrize("source,rows,items,refs", [
    ("mqm_ted_ende", 8435, 7406, {"ref"}), ("mqm_ted_zhen", 9915, 7935, {"ref", "refB"})])
def test_bundled_counts_match_the_data_readme(source, rows, items, refs):
    t0 = time.perf_counter()
    r = read_mqm_file(str(BUNDLED[source]), DataConfig(source=source), RejectLog("x"))
    assert r.stats["rows"] == rows and len(r.items) == items
    assert len({k[0] for k in r.items}) == 529
    systems = {k[1] for k in r.items}
    assert {s for s in systems if is_reference(s)} == refs
    assert len(systems) == 13 + len(refs)
    t, rej = read(source=source)
    assert time.perf_counter() - t0 < 10                  # ~0.2 s each on the dev machine
    assert t.df["input_id"].nunique() == 529 and t.df["response_id"].is_unique
    merged = rej.counts()["identical translation by several systems: merged into one response "
                          "(scores averaged)"]
    assert len(t.df) + merged == items and set(rej.counts()) == {
        "identical translation by several systems: merged into one response (scores averaged)"}
    assert (t.df[t.aspects + ["overall"]] <= 0).all().all()
    assert np.allclose(t.df[t.aspects].sum(axis=1) >= t.df["overall"] - 1e-9, True)


def test_bundled_aspects_and_reference_drop():
    t, _ = read(source="mqm_ted_ende")
    assert t.aspects == ["accuracy", "fluency", "style", "terminology"]   # no locale error
    t, _ = read(source="mqm_ted_zhen")
    assert t.aspects == A5
    t, rej = read(source="mqm_ted_zhen", mqm_references="drop", aspects=A5[:4])
    dropped = [i for i in rej.items if i["reason"].startswith("human reference dropped")][0]
    assert set(dropped["systems"]) == {"ref", "refB"} and dropped["count"] == 2 * 529
    assert not t.df["response_id"].str.endswith((":ref", ":refB")).any()


def test_bundled_zhen_aggregates_to_many_labelled_pairs():
    t, _ = read(source="mqm_ted_zhen", aspects=A5[:4])
    pairs = aggregate(t, AggregateConfig(), 0, RejectLog("aggregate"))
    assert len(pairs) > 20000 and set(pairs["aspect"]) == set(A5[:4])
    d = np.array([p for p in (pairs[delta_col(a)].where(pairs["aspect"] == a) for a in A5[:4])])
    assert (np.nanmax(d, axis=0) > 0).all()            # every label decided by its aspect
    conflict = (pairs["h_agrees_overall"] == 0).sum() / pairs["h_agrees_overall"].notna().sum()
    assert 0.05 < conflict < 0.2


def test_pipeline_smoke_on_bundled_zhen(tmp_path):
    from pdselect import load_config, run_pipeline

    cfg = load_config(Path(__file__).parents[1] / "configs" / "mqm_ted_zhen.yaml",
                      ["data.max_rows=400", f"run_dir={tmp_path / 'run'}", "proxy.epochs=50",
                       "aggregate.min_pairs_per_aspect=2"])
    run = Path(run_pipeline(cfg))
    assert (run / "select" / "dpo" / "train-00000.parquet").exists() and (run / "report.md").exists()
