"""Issue 17, class 2 (and the merge-key regression of class 7): every given setting either takes
effect or is an error naming it. ``select_pairs(config=FILE)`` used to drop the file's seed,
budget and method for the function's defaults and accepted duplicate YAML keys; data.* keys of
another source (data.scales with helpsteer2, ...) were accepted and ignored, and `validate`
passed."""

import pandas as pd
import pytest

import pdselect
from pdselect import pipeline
from pdselect.cli import main
from pdselect.config import load_config
from pdselect.errors import ConfigError


class _Stop(Exception):
    pass


@pytest.fixture()
def seen(monkeypatch):
    """select_pairs' resolved config, captured where the pipeline would start."""
    got = {}

    def fake(cfg, stages=None, **kw):
        got["cfg"], got["stages"] = cfg, stages
        raise _Stop

    monkeypatch.setattr(pipeline, "run_pipeline", fake)
    return got


DF = pd.DataFrame({"prompt": ["q1", "q1", "q2", "q2"], "response": ["a", "b", "c", "d"],
                   "help": [1, 2, 3, 4], "honest": [4, 3, 2, 1]})


def _api(tmp_path, text, **kw):
    f = tmp_path / "user.yaml"
    f.write_text(text)
    with pytest.raises(_Stop):
        pdselect.select_pairs(DF, config=f, run_dir=kw.pop("run_dir", tmp_path / "run"), **kw)


def test_select_pairs_honours_the_config_file(tmp_path, seen):
    _api(tmp_path, "seed: 7\nselect: {budget: 0.5, method: random, chat_format: "
                   "conversational, stratify_by_aspect: true}\nproxy: {epochs: 3}\n")
    cfg = seen["cfg"]
    assert cfg.seed == 7 and cfg.select.budget == 0.5 and cfg.select.method == "random"
    assert cfg.select.chat_format == "conversational" and cfg.select.stratify_by_aspect
    assert cfg.proxy.epochs == 3


def test_select_pairs_arguments_win_only_when_passed(tmp_path, seen):
    _api(tmp_path, "seed: 7\nselect: {budget: 0.5, method: random}\n", budget=0.2, seed=1)
    cfg = seen["cfg"]
    assert (cfg.seed, cfg.select.budget, cfg.select.method) == (1, 0.2, "random")


def test_select_pairs_without_config_keeps_the_documented_defaults(tmp_path, seen):
    with pytest.raises(_Stop):
        pdselect.select_pairs(DF, run_dir=tmp_path / "run")
    cfg = seen["cfg"]
    assert (cfg.seed, cfg.select.budget, cfg.select.method, cfg.select.chat_format) == \
        (0, 0.3, "pd", "standard")


def test_select_pairs_uses_the_files_run_dir_when_none_is_passed(tmp_path, seen):
    f = tmp_path / "user.yaml"
    f.write_text(f"run_dir: {tmp_path / 'from_file'}\n")
    with pytest.raises(_Stop):
        pdselect.select_pairs(DF, config=f)
    assert seen["cfg"].run_dir == str(tmp_path / "from_file")
    assert seen["stages"][-1] == "report"  # a kept run gets its report, as with run_dir=


def test_select_pairs_refuses_duplicate_keys_like_the_cli(tmp_path, seen):
    with pytest.raises(ConfigError, match=r"config key 'budget'.*duplicate key in .*user.yaml "
                                          r"at line 3 \(first set at line 2\)"):
        _api(tmp_path, "select:\n  budget: 0.5\n  budget: 0.1\n")
    assert "cfg" not in seen


@pytest.mark.parametrize("key", ["path", "source"])
def test_select_pairs_refuses_a_files_data_path_or_source(tmp_path, seen, key):
    with pytest.raises(ConfigError, match=rf"config key 'data.{key}'.*select_pairs reads the "
                                          rf"dataset argument.*Fix: remove data.{key}"):
        _api(tmp_path, f"data: {{{key}: helpsteer2}}\n")


def test_yaml_merge_keys_work_in_the_cli_and_the_api(tmp_path, seen):
    f = tmp_path / "merge.yaml"
    f.write_text("select:\n  <<: {budget: 0.5, method: random}\n  method: pd\nseed: 3\n")
    cfg = load_config(f)
    assert (cfg.select.budget, cfg.select.method, cfg.seed) == (0.5, "pd", 3)
    with pytest.raises(_Stop):
        pdselect.select_pairs(DF, config=f, run_dir=tmp_path / "run")
    assert (seen["cfg"].select.budget, seen["cfg"].select.method) == (0.5, "pd")


def test_merge_key_with_an_anchor_and_duplicates_beside_it(tmp_path):
    f = tmp_path / "anchors.yaml"
    f.write_text("proxy: &p\n  epochs: 4\n  l2: 0.1\nalign:\n  <<: *p\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="config key 'align.l2': unknown key"):
        load_config(f)  # merged keys are checked like written ones
    f.write_text("select: &s\n  budget: 0.4\nexperiment:\n  <<: {seeds: [1]}\n")
    assert load_config(f).experiment.seeds == [1]
    f.write_text("select:\n  <<: {budget: 0.5}\n  method: pd\n  method: random\n")
    with pytest.raises(ConfigError, match="config key 'method': duplicate key"):
        load_config(f)


# (overrides, key named, source named)
MISPLACED = [
    (["data.source=helpsteer2", "data.path=h.jsonl", "data.scales={helpfulness: [0, 4]}"],
     "data.scales", "helpsteer2"),
    (["data.source=helpsteer2", "data.path=h.jsonl", "data.columns={input: q}"],
     "data.columns", "helpsteer2"),
    (["data.source=ultrafeedback", "data.path=u.jsonl", "data.shape=long"], "data.shape",
     "ultrafeedback"),
    (["data.source=helpsteer2", "data.path=h.jsonl",
      "data.aspect_columns={a: b}"], "data.aspect_columns",
     "helpsteer2"),
    (["data.source=helpsteer2", "data.path=h.jsonl",
      "data.mqm_references=drop"], "data.mqm_references",
     "helpsteer2"),
    (["data.source=generic", "data.path=x.csv", "data.mqm_weights={Major: 4}"],
     "data.mqm_weights", "generic"),
    (["data.source=generic", "data.path=x.csv", "data.preference_path=p.jsonl"],
     "data.preference_path", "generic"),
    (["data.source=usr_topical_chat", "data.scales={natural: [1, 3]}"], "data.scales",
     "usr_topical_chat"),
    (["data.source=mqm_ted_zhen", "data.columns={input: src}"], "data.columns",
     "mqm_ted_zhen"),
]


@pytest.mark.parametrize("overrides,key,source", MISPLACED)
def test_key_of_another_source_is_an_error_naming_key_and_source(overrides, key, source,
                                                                 capsys):
    with pytest.raises(ConfigError, match=rf"config key '{key}': is set .* but source "
                                          rf"'{source}' does not read it.*Fix: remove {key}"):
        load_config(None, overrides)
    assert main(["-q", "validate", *overrides]) != 0  # validate no longer passes
    assert f"config key '{key}'" in capsys.readouterr().err


@pytest.mark.parametrize("key,value", [("revision", "main"), ("hf_split", "test"),
                                       ("config", "default"), ("data_dir", "sub")])
def test_hub_keys_with_a_local_path_are_an_error(key, value):
    with pytest.raises(ConfigError, match=rf"config key 'data.{key}'.*not a Hugging Face "
                                          rf"dataset id"):
        load_config(None, ["data.source=helpsteer2", "data.path=./local.jsonl",
                           f"data.{key}={value}"])
    # a hub id keeps them
    cfg = load_config(None, ["data.source=helpsteer2", "data.path=nvidia/HelpSteer2",
                             f"data.{key}={value}"])
    assert getattr(cfg.data, key) == value


@pytest.mark.parametrize("overrides", [
    ["data.source=helpsteer3", "data.path=x.jsonl", "data.aspect_columns={a: b, c: d}",
     "data.scales={a: [-3, 3]}"],
    ["data.source=mqm", "data.path=x.tsv", "data.mqm_references=drop"],
    ["data.source=helpsteer2", "data.path=x.jsonl", "data.preference_path=p.jsonl"],
    ["data.source=generic", "data.path=x.csv", "data.shape=long"],
])
def test_keys_of_the_chosen_source_are_accepted(overrides):
    load_config(None, overrides)
