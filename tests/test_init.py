"""`pdselect init`: a sniffed, commented config that `validate --full` passes, on several
shapes; the shipped examples; one end-to-end run from an init-written config."""

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdselect.cli import main
from pdselect.config import load_config
from pdselect.data.sniff import guess_scale, sniff
from pdselect.init_config import EXAMPLES
from pdselect.errors import InputError
from pdselect.validate import validate

ROOT = Path(__file__).parent.parent
PKG = ROOT / "src" / "pdselect" / "examples"


def jsonl(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def wide_csv(path: Path, n=24) -> Path:
    """Non-canonical names, a model column, a row id: what a user's export looks like."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        for j, model in enumerate(["gpt", "llama", "mistral", "qwen"]):
            rows.append({"row": len(rows), "qid": f"item-{i}", "model": model,
                         "question": f"How do I solve problem number {i}?",
                         "answer": f"{model} says: step {j} " + "and more detail " * j,
                         "Accuracy": rng.randint(1, 5), "clarity": rng.randint(2, 4),
                         "safety score": rng.randint(0, 4),
                         "overall_rating": round(rng.uniform(1, 9), 1)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def long_jsonl(path: Path, n=24) -> Path:
    rng = random.Random(1)
    recs = []
    for i in range(n):
        for j in range(4):
            for crit in ("relevance", "fluency", "faithfulness"):
                recs.append({"doc": f"Summarise document {i}.", "summary": f"summary {j} of {i}"
                             + " extra" * j, "criterion": crit, "score": rng.randint(1, 7)})
    return jsonl(path, recs)


def ultrafeedback(path: Path, n=24) -> Path:
    rng = random.Random(2)
    recs = []
    for i in range(n):
        comps = []
        for j in range(4):
            comps.append({"model": f"m{j}", "response": f"completion {j} for {i}" + " x" * j,
                          "overall_score": rng.uniform(1, 10),
                          "annotations": {a: {"Rating": str(rng.randint(1, 5))} for a in
                                          ("helpfulness", "honesty", "instruction_following",
                                           "truthfulness")}})
        recs.append({"source": "s", "instruction": f"instruction {i}", "completions": comps})
    return jsonl(path, recs)


def pairs_file(path: Path, n=30) -> Path:
    rng = random.Random(3)
    recs = [{"prompt": f"prompt {i % 10}", "chosen": f"good {i}", "rejected": f"bad {i}",
             "aspect": rng.choice(["helpfulness", "honesty", "verbosity"])} for i in range(n)]
    counts = pd.Series([r["aspect"] for r in recs]).value_counts()
    assert counts.min() >= 8
    return jsonl(path, recs)


def helpsteer3(path: Path, n=40) -> Path:
    rng = random.Random(4)
    recs = [{"domain": "code", "language": "python",
             "context": [{"role": "user", "content": f"write function {i}"}],
             "response1": f"def f{i}(): pass", "response2": f"def f{i}():\n    return {i}",
             "overall_preference": rng.randint(-3, 3), "individual_preference": [],
             "helpfulness_pref": rng.choice([-2, -1, 1, 2]),
             "correctness_pref": rng.choice([-3, -1, 1, 3])} for i in range(n)]
    return jsonl(path, recs)


CASES = {  # file maker, expected source, shape, overall
    "wide.csv": (wide_csv, "generic", "wide", True),
    "long.jsonl": (long_jsonl, "generic", "long", False),
    "uf.jsonl": (ultrafeedback, "ultrafeedback", None, True),
    "pairs.jsonl": (pairs_file, "pairs", None, False),
    "hs3.jsonl": (helpsteer3, "helpsteer3", None, True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_init_writes_a_config_that_validate_full_passes(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make, source, shape, overall = CASES[name]
    data = make(tmp_path / name)
    assert main(["-q", "init", "--data", str(data), "--out", "cfg.yaml"]) == 0
    out = capsys.readouterr().out
    assert "validation passed" in out and "next: pdselect run -c cfg.yaml" in out
    text = (tmp_path / "cfg.yaml").read_text()
    assert text.startswith("# pdselect config written by `pdselect init")
    assert "test_fraction: auto" in text
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg.data.source == source and cfg.data.path == str(data)
    if shape:
        assert cfg.data.shape == shape
    rep = validate(cfg, full=True)  # the CLI's check, again, outside init
    assert rep.ok, rep.render()
    assert ("30% of inputs held out" if overall else "none: every input") in rep.render()
    # the same command refuses to overwrite
    assert main(["-q", "init", "--data", str(data), "--out", "cfg.yaml"]) == 1
    assert "exists" in capsys.readouterr().err


def test_sniffed_columns_and_scales(tmp_path):
    s = sniff(str(wide_csv(tmp_path / "w.csv")))
    assert s.mapping == {"input": "question", "response": "answer", "input_id": "qid",
                         "overall": "overall_rating"}
    # `row` (an id), `model` (a label) are not aspects; a spaced name is renamed
    assert s.aspects == ["Accuracy", "clarity", "safety_score"]
    assert s.aspect_columns == {"safety_score": "safety score"}
    assert s.scales == {"overall": [1.0, 10.0], "Accuracy": [1.0, 5.0], "clarity": [1.0, 5.0],
                        "safety_score": [0.0, 4.0]}
    s = sniff(str(long_jsonl(tmp_path / "l.jsonl")))
    assert s.shape == "long" and s.mapping == {"input": "doc", "response": "summary",
                                               "aspect": "criterion", "rating": "score"}
    assert s.aspects == ["relevance", "fluency", "faithfulness"] and not s.overall


@pytest.mark.parametrize("lo,hi,scale", [(1, 5, [1, 5]), (2, 4, [1, 5]), (0, 4, [0, 4]),
                                         (1, 2, [1, 3]), (0.2, 0.9, [0, 1]), (3, 8, [1, 10]),
                                         (0, 37, [0, 100]), (-3, 3, [-3, 3]),
                                         (-24.5, 0, [-25, 0]), (120, 480, [120, 480])])
def test_guess_scale(lo, hi, scale):
    assert guess_scale(lo, hi) == [float(x) for x in scale]


def test_init_explains_what_pd_cannot_use(tmp_path, capsys):
    binarized = jsonl(tmp_path / "b.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    one = tmp_path / "one.csv"
    pd.DataFrame({"prompt": ["p", "p"], "response": ["a", "b"], "score": [1, 2]}).to_csv(
        one, index=False)
    pref = jsonl(tmp_path / "preference.jsonl", [{"prompt": "p", "response_1": "a",
                                                   "response_2": "b",
                                                   "preference_strength": 2}])
    hs3 = jsonl(tmp_path / "hs3.jsonl", [{"context": [{"role": "user", "content": "q"}],
                                          "response1": "a", "response2": "b",
                                          "overall_preference": 1}])
    for f, msg in [(binarized, "binarized preference set"),
                   (one, "PD needs at least two aspects"),
                   (pref, "HelpSteer2's preference file"),
                   (hs3, "no per-aspect label")]:
        assert main(["-q", "init", "--data", str(f), "--out", str(tmp_path / "x.yaml")]) == 1
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x.yaml").exists()
    with pytest.raises(InputError, match="PD needs at least two aspects"):
        sniff(str(one))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shipped_examples_copy_and_validate(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "init", "--example", name, "--out", "ex/cfg.yaml"]) == 0
    assert "validation passed" in capsys.readouterr().out
    cfg = load_config("ex/cfg.yaml")
    if cfg.data.path:
        assert Path(cfg.data.path).parent == Path("ex") and Path(cfg.data.path).exists()


def test_repo_configs_are_the_shipped_examples():
    """configs/examples/*.yaml and configs/demo.yaml are what the wheel ships."""
    assert (ROOT / "configs" / "demo.yaml").read_text() == (PKG / "demo.yaml").read_text()
    for name in ("wide", "long"):
        assert (ROOT / "configs" / "examples" / f"{name}.yaml").read_text() == \
            (PKG / f"{name}.yaml").read_text()
    for cfg_name, files in EXAMPLES.values():
        assert (PKG / cfg_name).is_file() and all((PKG / f).is_file() for f in files)
    for name in ("wide", "long"):
        data = yaml.safe_load((PKG / f"{name}.yaml").read_text())["data"]["path"]
        assert (ROOT / data).is_file()  # runs from the repository root as written


def test_init_then_run_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = wide_csv(tmp_path / "mine.csv", n=16)
    assert main(["-q", "init", "--data", str(data), "--out", "mine.yaml"]) == 0
    capsys.readouterr()
    assert main(["-q", "run", "-c", "mine.yaml", "proxy.epochs=20"]) == 0
    run = tmp_path / "runs" / "mine"
    assert (run / "report.md").exists() and (run / "select" / "_SUCCESS").exists()
    meta = json.loads((run / "aggregate" / "meta.json").read_text())
    assert meta["holdout"].startswith("30% of inputs held out") and meta["n_test"] > 0
    sel = pd.read_parquet(run / "select" / "selection.parquet")
    assert 0 < sel["selected"].sum() < len(sel)
