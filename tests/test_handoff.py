"""The hand-off: the TRL dataset alone in select/dpo/ (loads with `datasets`, trains under a stock
DPOTrainer with its extra columns), the conversational form shared with `align`, the inspection
table, and `pdselect.select_pairs` for notebooks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect.select.dpo_data import conversational_example, format_pairs, read_pairs, to_conversational
from pdselect.run.artifacts import RunDir
from pdselect.config import load_config
from pdselect.errors import InputError
from pdselect.pipeline import run_pipeline
from pdselect.data.schema import HIDDEN_PREFIX

ASPECTS = ["helpful", "concise"]
TRL_COLUMNS = ["prompt", "chosen", "rejected", "pair_id", "aspect", "rank", "pd",
               "gap__helpful", "gap__concise", "label_source"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("handoff")
    data = write_tiny(d / "data.jsonl")
    root = d / "run"
    run_pipeline(load_config(None, tiny_overrides(data, root)))
    return root, data


@pytest.fixture
def run(tiny_run):
    return tiny_run[0]


@pytest.fixture
def variant(tiny_run, tmp_path, caplog):
    """A copy of the module's run with other select settings: only select and report re-run."""
    def make(*over: str) -> Path:
        root = tmp_path / ("variant_" + "_".join(o.split("=")[1] for o in over))
        shutil.copytree(tiny_run[0], root)
        with caplog.at_level("INFO", logger="pdselect.pipeline"):
            run_pipeline(load_config(None, tiny_overrides(tiny_run[1], root, *over)))
        assert "score     skipped" in caplog.text
        return root
    return make


def _load(folder: Path, tmp_path: Path):
    from datasets import load_dataset

    return load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))


# ----------------------------------------------------------------------------- the folder
def test_dataset_alone_in_its_folder_loads_with_datasets(run, tmp_path):
    from datasets import load_dataset

    folder = run / "select" / "dpo"
    # no overall label -> no inputs held out -> no test split; the card sits beside the data
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "train-00000.parquet"]
    assert not (run / "select" / "dpo.parquet").exists()  # one copy, in the folder
    dd = _load(folder, tmp_path)
    assert list(dd) == ["train"]
    ds = dd["train"]
    meta = json.loads((run / "select" / "meta.json").read_text())
    assert len(ds) == meta["n_selected"] > 0 and meta["dataset"] == str(folder)
    assert ds.column_names == TRL_COLUMNS
    assert not [c for c in ds.column_names if c.startswith(HIDDEN_PREFIX) or c == "pd_rati"]
    # the same through the parquet builder's data_dir, as the users call it
    same = load_dataset("parquet", data_dir=str(folder), split="train",
                        cache_dir=str(tmp_path / "hf2"))
    assert same["pair_id"] == ds["pair_id"]
    # rows in selector order, scores equal to the score table's
    assert ds["rank"] == list(range(len(ds)))
    scores = pd.read_parquet(run / "score" / "scores.parquet").set_index("pair_id")
    got = ds.to_pandas().set_index("pair_id")
    for c in ("pd", "gap__helpful", "gap__concise"):
        np.testing.assert_allclose(got[c], scores.loc[got.index, c])
    assert all(isinstance(p, str) for p in ds["prompt"])


def test_inspect_table_has_every_pool_pair(run):
    insp = pd.read_parquet(run / "select" / "inspect.parquet")
    sel = pd.read_parquet(run / "select" / "selection.parquet")
    pairs = pd.read_parquet(run / "aggregate" / "pairs.parquet")
    train = pairs[pairs["split"] == "train"].set_index("pair_id")
    assert len(insp) == len(sel) == len(train)
    assert insp["rank"].tolist() == list(range(len(insp)))
    n_kept = int(sel["selected"].sum())
    assert insp["kept"].tolist() == [True] * n_kept + [False] * (len(insp) - n_kept)
    for c in ("prompt", "chosen", "rejected", "aspect", "pd", "len_chosen", "len_rejected",
              *[f"gap__{a}" for a in ASPECTS], *[f"norm__{a}" for a in ASPECTS]):
        assert c in insp.columns, c
    t = insp.set_index("pair_id")
    assert (t["prompt"] == train.loc[t.index, "input"]).all()
    assert (t["chosen"] == train.loc[t.index, "chosen"]).all()
    # PD = -(sum of the other aspects' normalised gaps), readable from the table alone
    own = np.where(t["aspect"] == "helpful", t["norm__concise"], t["norm__helpful"])
    np.testing.assert_allclose(t["pd"], -own, atol=1e-9)
    assert not [c for c in insp.columns if c.startswith(HIDDEN_PREFIX)]


def test_align_and_eval_read_the_folder(run):
    from pdselect.policy_stages import selected_dataset

    folder = selected_dataset(RunDir(run))
    assert folder == run / "select" / "dpo"
    df = read_pairs(folder)
    assert len(df) == json.loads((run / "select" / "meta.json").read_text())["n_selected"]


def test_read_pairs_folder_without_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .parquet or .jsonl"):
        read_pairs(tmp_path / "empty")


def test_jsonl_output_is_alone_in_the_folder_too(run, variant, tmp_path):
    root = variant("select.output_format=jsonl")
    folder = root / "select" / "dpo"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "train-00000.jsonl"]
    ds = _load(folder, tmp_path)["train"]
    ref = pd.read_parquet(run / "select" / "dpo" / "train-00000.parquet")
    assert ds["pair_id"] == ref["pair_id"].tolist() and ds["prompt"] == ref["prompt"].tolist()


# ----------------------------------------------------------------------------- conversational
def test_builder_keeps_dialogue_turns_and_wraps_text():
    turns = [{"role": "system", "content": "Fact: cats purr."},
             {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "do cats purr?"}]
    ex = conversational_example(turns, "yes", [{"role": "assistant", "content": "no"}])
    assert ex["prompt"] == turns and ex["prompt"] is not turns
    assert ex["chosen"] == [{"role": "assistant", "content": "yes"}]
    assert ex["rejected"] == [{"role": "assistant", "content": "no"}]
    assert conversational_example("q", "a", "b")["prompt"] == [{"role": "user", "content": "q"}]


def test_builder_reads_message_lists_back_from_parquet(tmp_path):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "and?"}]
    pd.DataFrame({"prompt": [turns], "chosen": ["a"], "rejected": ["b"]}).to_parquet(
        tmp_path / "x.parquet")
    back = pd.read_parquet(tmp_path / "x.parquet")
    assert isinstance(back["prompt"].iloc[0], np.ndarray)  # what parquet gives back
    assert to_conversational(back)["prompt"].iloc[0] == turns


def test_conversational_export_is_what_align_trains_on(run, variant, tmp_path):
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational

    from pdselect.align.policy import tiny_llama

    root = variant("select.chat_format=conversational")
    conv = _load(root / "select" / "dpo", tmp_path)["train"]
    std = pd.read_parquet(run / "select" / "dpo" / "train-00000.parquet")
    assert conv.column_names == TRL_COLUMNS and conv["pair_id"] == std["pair_id"].tolist()
    assert is_conversational(conv[0])
    assert conv["prompt"][0] == [{"role": "user", "content": std["prompt"].iloc[0]}]
    tok = AutoTokenizer.from_pretrained(tiny_llama(tmp_path / "tiny"))
    trained, n_cut = format_pairs(std, tok, max_length=100_000)  # align's input, uncut
    assert n_cut == 0
    exported = [{k: conv[i][k] for k in ("prompt", "chosen", "rejected")}
                for i in range(len(conv))]
    assert exported == [{k: t[k] for k in ("prompt", "chosen", "rejected")} for t in trained]
    # and align reading the conversational folder builds the same examples again
    again, _ = format_pairs(read_pairs(root / "select" / "dpo"), tok, max_length=100_000)
    assert [{k: t[k] for k in ("prompt", "chosen", "rejected")} for t in again] == exported


@pytest.mark.parametrize("chat_format,remove_unused", [("standard", True),
                                                       ("conversational", False)])
def test_stock_dpo_trainer_trains_on_the_folder_with_extra_columns(run, variant, tmp_path,
                                                                   chat_format, remove_unused):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from pdselect.align.policy import tiny_llama

    root = run if chat_format == "standard" else variant(f"select.chat_format={chat_format}")
    ds = _load(root / "select" / "dpo", tmp_path)["train"]
    assert {"aspect", "pd", "rank", "gap__helpful"} <= set(ds.column_names)
    path = tiny_llama(tmp_path / "tiny")
    torch.manual_seed(0)
    args = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=2,
                     per_device_train_batch_size=2, max_length=96, use_cpu=True, report_to=[],
                     logging_steps=1, save_strategy="no",
                     remove_unused_columns=remove_unused, dataloader_num_workers=0)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                         train_dataset=ds, processing_class=AutoTokenizer.from_pretrained(path))
    out = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(out.training_loss)


# ----------------------------------------------------------------------------- select_pairs
def _usr_rated(n_inputs: int = 24) -> pd.DataFrame:
    from pdselect.data.usr import BUNDLED

    rows = pd.DataFrame(json.loads((BUNDLED / "topical_chat.json").read_text()))
    keep = rows["dialog_history"].drop_duplicates().head(n_inputs)
    rows = rows[rows["dialog_history"].isin(keep)]
    return pd.DataFrame({"prompt": rows["dialog_history"], "response": rows["response"],
                         "understandable": rows["understandable"], "natural": rows["natural"],
                         "engaging": rows["engaging"], "overall": rows["overall"]})


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    import pdselect

    root = tmp_path_factory.mktemp("api") / "run"
    df = _usr_rated()
    ds = pdselect.select_pairs(df, aspects=["understandable", "natural", "engaging"],
                               budget=0.3, run_dir=root,
                               scales={"understandable": [0, 1], "natural": [1, 3],
                                       "engaging": [1, 3], "overall": [1, 5]},
                               overrides=["proxy.epochs=50"])
    return root, df, ds


def test_select_pairs_on_rated_responses_returns_the_run_selection(api_run):
    from datasets import Dataset

    root, df, ds = api_run
    assert isinstance(ds, Dataset)
    meta = json.loads((root / "select" / "meta.json").read_text())
    assert len(ds) == meta["n_selected"] == math.ceil(0.3 * meta["n_pool"])
    assert ds.column_names == ["prompt", "chosen", "rejected", "pair_id", "aspect", "rank", "pd",
                               "gap__understandable", "gap__natural", "gap__engaging",
                               "label_source"]
    assert ds["rank"] == list(range(len(ds)))
    assert all(a <= b for a, b in zip(ds["pd"], ds["pd"][1:]))  # most negative PD first
    ref = pd.read_parquet(root / "select" / "dpo" / "train-00000.parquet")
    assert ds["pair_id"] == ref["pair_id"].tolist()
    assert set(ds["prompt"]) <= set(df["prompt"])
    assert (root / "report.html").is_file() and (root / "select" / "inspect.parquet").is_file()
    # the overall column is evaluation only: it reached the hidden columns, not the dataset
    assert json.loads((root / "ingest" / "meta.json").read_text())["has_overall"]


def test_select_pairs_on_pairs_dataset_with_a_temp_run(api_run, tmp_path, monkeypatch):
    import tempfile

    from datasets import Dataset

    import pdselect

    root, _, _ = api_run
    insp = pd.read_parquet(root / "select" / "inspect.parquet")
    pairs = Dataset.from_pandas(insp[["prompt", "chosen", "rejected", "aspect"]],
                                preserve_index=False)
    made = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp",
                        lambda **k: made.append(real(dir=tmp_path, **k)) or made[-1])
    ds = pdselect.select_pairs(pairs, budget_count=10, chat_format="conversational",
                               overrides=["proxy.epochs=50", "aggregate.test_fraction=0"])
    assert len(ds) == 10 and ds["rank"] == list(range(10))
    assert ds[0]["prompt"][0]["role"] == "user" and ds[0]["chosen"][0]["role"] == "assistant"
    assert made and not Path(made[0]).exists()  # the temporary run is removed


def test_select_pairs_rejects_an_unknown_shape():
    import pdselect

    with pytest.raises(InputError, match="neither"):
        pdselect.select_pairs(pd.DataFrame({"question": ["q"], "answer": ["a"]}))
    with pytest.raises(TypeError):
        pdselect.select_pairs("not a table")


# ----------------------------------------------------------------------------- train + test
@pytest.fixture(scope="module")
def overall_run(tmp_path_factory):
    """A run whose data has an overall rating: inputs are held out, select/dpo has a test split."""
    from test_dataset_card import overall_overrides, write_tiny_overall

    d = tmp_path_factory.mktemp("overall")
    data = write_tiny_overall(d / "data.jsonl")
    root = run_pipeline(load_config(None, overall_overrides(data, d / "run")))
    return root, data


@pytest.fixture
def overall_variant(overall_run, tmp_path):
    from test_dataset_card import overall_overrides

    def make(*over: str) -> Path:
        root = tmp_path / ("ov_" + "_".join(o.split("=")[1] for o in over))
        shutil.copytree(overall_run[0], root)
        run_pipeline(load_config(None, overall_overrides(overall_run[1], root, *over)))
        return root
    return make


def test_trl_dpo_cli_trains_two_steps_with_the_test_split_for_eval(overall_run, tmp_path):
    """`trl dpo --dataset_name <run>/select/dpo` (TRL 1.16's CLI, as docs/HANDOFF.md gives
    it): 2 steps on a tiny model, evaluated on the folder's test split."""
    import os
    import subprocess
    import sys

    from pdselect.align.policy import tiny_llama

    root = overall_run[0]
    n_test = json.loads((root / "select" / "meta.json").read_text())["n_test"]
    assert n_test > 0
    trl = Path(sys.executable).parent / "trl"
    cmd = [str(trl), "dpo", "--dataset_name", str(root / "select" / "dpo"),
           "--model_name_or_path", str(tiny_llama(tmp_path / "tiny")),
           "--output_dir", str(tmp_path / "out"), "--max_steps", "2",
           "--eval_strategy", "steps", "--eval_steps", "2", "--per_device_train_batch_size", "2",
           "--per_device_eval_batch_size", "4", "--max_length", "96", "--use_cpu",
           "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "'eval_loss'" in log and "Training completed" in log
    # the eval ran over every test pair: ceil(n_test / 4) eval steps
    assert f"{math.ceil(n_test / 4)}/{math.ceil(n_test / 4)}" in log


@pytest.mark.parametrize("chat_format", ["conversational", "implicit_prompt"])
def test_dpo_trainer_trains_and_evaluates_on_the_test_split(overall_variant, tmp_path,
                                                            chat_format):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from pdselect.align.policy import tiny_llama

    root = overall_variant(f"select.chat_format={chat_format}")
    dd = _load(root / "select" / "dpo", tmp_path)
    assert sorted(dd) == ["test", "train"]
    path = tiny_llama(tmp_path / "tiny")
    torch.manual_seed(0)
    args = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                     per_device_eval_batch_size=4, max_length=96, use_cpu=True, report_to=[],
                     save_strategy="no", eval_strategy="steps", eval_steps=2,
                     dataloader_num_workers=0)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                         train_dataset=dd["train"], eval_dataset=dd["test"],
                         processing_class=AutoTokenizer.from_pretrained(path))
    out = trainer.train()
    assert trainer.state.global_step == 2 and math.isfinite(out.training_loss)
    assert math.isfinite(trainer.evaluate()["eval_loss"])


# ----------------------------------------------------------------------------- layouts
def test_implicit_prompt_layout_is_the_conversational_one_with_the_prompt_inside(
        overall_run, overall_variant):
    from trl.data_utils import extract_prompt

    conv = pd.read_parquet(overall_variant("select.chat_format=conversational")
                           / "select" / "dpo" / "train-00000.parquet")
    imp = pd.read_parquet(overall_variant("select.chat_format=implicit_prompt")
                          / "select" / "dpo" / "train-00000.parquet")
    assert "prompt" not in imp.columns and imp.columns[:2].tolist() == ["chosen", "rejected"]
    for c, i in zip(conv.to_dict("records"), imp.to_dict("records")):
        got = extract_prompt({"chosen": [dict(m) for m in i["chosen"]],
                              "rejected": [dict(m) for m in i["rejected"]]})
        assert got["prompt"] == [dict(m) for m in c["prompt"]]
        assert got["chosen"] == [dict(m) for m in c["chosen"]]
        assert got["rejected"] == [dict(m) for m in c["rejected"]]


def _llamafactory_sharegpt(example: dict) -> tuple[list, list] | None:
    """LLaMA-Factory's SharegptDatasetConverter (src/llamafactory/data/converter.py at
    ff6d4d1, default tags) for a ranking example: (prompt, response) or None when it would
    skip the example as broken."""
    odd, even = ("human", "observation"), ("gpt", "function_call")
    messages = example["conversations"]
    if messages and messages[0]["from"] == "system":
        messages = messages[1:]
    for i, m in enumerate(messages):
        if m["from"] not in (odd, even)[i % 2]:
            return None
    if len(messages) % 2 == 0:  # ranking: the prompt must end on a human turn
        return None
    ch, rj = example["chosen"], example["rejected"]
    if not (isinstance(ch, dict) and isinstance(rj, dict)) or ch["from"] not in even \
            or rj["from"] not in even:
        return None
    return messages, [ch["value"], rj["value"]]


def test_sharegpt_file_parses_the_way_llamafactory_loads_it(overall_variant, tmp_path):
    from datasets import load_dataset

    root = overall_variant("select.chat_format=sharegpt")
    info = json.loads((root / "select" / "dataset_info.json").read_text())
    assert info["pdselect"] == {"file_name": "dpo/train-00000.parquet", "formatting": "sharegpt",
                                "ranking": True, "columns": {"messages": "conversations",
                                                             "chosen": "chosen",
                                                             "rejected": "rejected"}}
    assert info["pdselect_test"]["file_name"] == "dpo/test-00000.parquet"
    for name, entry in info.items():
        # LLaMA-Factory's loader: dataset_dir joined with file_name, read by its extension
        path = root / "select" / entry["file_name"]
        ds = load_dataset("parquet", data_files=[str(path)], split="train",
                          cache_dir=str(tmp_path / "hf" / name))
        assert len(ds) > 0
        for ex in ds:
            got = _llamafactory_sharegpt(ex)
            assert got is not None, ex
            assert got[0][-1]["from"] == "human" and got[1][0] != got[1][1]


def test_standard_layout_gets_llamafactorys_alpaca_entry(overall_run):
    info = json.loads((overall_run[0] / "select" / "dataset_info.json").read_text())
    assert info["pdselect"] == {"file_name": "dpo/train-00000.parquet", "ranking": True,
                                "columns": {"prompt": "prompt", "chosen": "chosen",
                                            "rejected": "rejected"}}


def test_sharegpt_turns_alternate_or_are_flattened():
    from pdselect.select.formats import sharegpt_turns

    sys_ = {"role": "system", "content": "be nice"}
    u, a = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"})
    assert sharegpt_turns([sys_, u, a, u]) == [
        {"from": "system", "value": "be nice"}, {"from": "human", "value": "hi"},
        {"from": "gpt", "value": "hello"}, {"from": "human", "value": "hi"}]
    # consecutive user turns merge
    assert sharegpt_turns([u, u]) == [{"from": "human", "value": "hi\nhi"}]
    # a dialogue that starts with the assistant cannot alternate: one human turn, roles kept
    assert sharegpt_turns([a, u]) == [{"from": "human", "value": "assistant: hello\nuser: hi"}]
