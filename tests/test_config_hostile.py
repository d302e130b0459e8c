"""Every config value is validated before compute, with the key, what was expected and the fix;
``validate --full`` and ``run`` make the same checks. Files: tests/data/bad_configs/ (README)."""

from pathlib import Path

import pytest
from tiny_data import tiny_overrides, write_tiny

from pdselect.cli import main
from pdselect.config import check_devices, load_config
from pdselect.errors import ConfigError

BAD = Path(__file__).parent / "data" / "bad_configs"

# file -> fragments the ConfigError raised by load_config must contain (key, problem, fix)
AT_LOAD = {
    "duplicate_key.yaml": ["config key 'budget'", "duplicate key in", "at line 5",
                           "first set at line 4", "Fix: keep one of the two lines"],
    "duplicate_section.yaml": ["config key 'select'", "at line 5", "first set at line 1"],
    "seed_negative.yaml": ["config key 'seed'", "-1 is out of range [0, 4294967295]",
                           "Fix: use a seed between 0 and 2**32-1"],
    "seed_too_large.yaml": ["config key 'seed'", "4294967296 is out of range"],
    "nan_float.yaml": ["config key 'proxy.l2'", "nan is not a finite number",
                       "Fix: write a finite number"],
    "inf_float.yaml": ["config key 'score.gamma'", "inf is not a finite number"],
    "zero_batch_size.yaml": ["config key 'proxy.batch_size'", "0 must be > 0",
                             "Fix: set proxy.batch_size to a positive number"],
    "negative_shard_size.yaml": ["config key 'score.shard_size'", "-5 must be > 0"],
    "zero_max_tokens.yaml": ["config key 'proxy.max_response_tokens'", "0 must be >= 1",
                             "Fix: set proxy.max_response_tokens to a value >= 1"],
    "zero_align_epochs.yaml": ["config key 'align.epochs'", "0.0 must be > 0"],
    "zero_max_pairs_per_input.yaml": ["config key 'aggregate.max_pairs_per_input'",
                                      "must be >= 1 or null", "Fix: use null"],
    "duplicate_aspects.yaml": ["config key 'data.aspects'", "'natural' is listed twice",
                               "Fix: list each entry once"],
    "duplicate_budgets.yaml": ["config key 'experiment.budgets'", "0.1 is listed twice"],
    "reserved_aspect.yaml": ["config key 'data.aspects[1]'", "'pd' is a reserved column name",
                             "Fix: rename the aspect"],
    "reserved_prefix_aspect.yaml": ["config key 'data.aspect_columns.gap__help'",
                                    "starts with a reserved prefix (h_, gap__, norm__)"],
    "empty_run_dir.yaml": ["config key 'run_dir': is empty", "Fix: set run_dir to a new"],
    "yaml_syntax.yaml": ["yaml_syntax.yaml", "is not valid YAML (line 3",
                         "Fix: fix the YAML syntax"],
    "margin_without_model.yaml": ["config key 'select.method'", "score.margin_model is false",
                                  "Fix: set score.margin_model=true"],
    "unknown_device.yaml": ["config key 'proxy.device'", "'gpu0' is not a device",
                            "Fix: use one of cpu, cuda, cuda:N, mps"],
}


@pytest.mark.parametrize("name", sorted(AT_LOAD))
def test_bad_config_file_fails_at_load_with_key_and_fix(name):
    with pytest.raises(ConfigError) as e:
        load_config(BAD / name)
    for fragment in AT_LOAD[name]:
        assert fragment in str(e.value), (fragment, str(e.value))


def test_every_bad_config_file_is_tested_and_documented():
    files = {p.name for p in BAD.glob("*.yaml")}
    tested = set(AT_LOAD) | {"cuda_proxy_device.yaml", "cuda_align_device.yaml",
                             "budget_selects_nothing.yaml"}
    assert files == tested
    readme = (BAD / "README.md").read_text()
    assert all(f"`{f}`" in readme for f in files)


@pytest.mark.parametrize("override,fragments", [
    ("select.budget", ["config key 'select.budget'", "must look like key=value"]),
    ("=3", ["config key '=3'", "the key '' before '=' is empty", "Fix: write a dotted key"]),
    ("a..b=1", ["the key 'a..b' before '=' is empty or has an empty part"]),
    ("select. budget=1", ["has an empty part"]),
    ("data.aspects=[a,", ["config key 'data.aspects'", "the value '[a,' is not valid YAML",
                          "Fix: fix the value's YAML syntax"]),
    ("data.columns={input: q, input: r}", ["config key 'input'", "duplicate key in override"]),
    ("seed=-3", ["config key 'seed'", "out of range [0, 4294967295]"]),
    ("proxy.rho=.inf", ["config key 'proxy.rho'", "not a finite number"]),
    ("proxy.lr=0", ["config key 'proxy.lr'", "0.0 must be > 0"]),
    ("select.compare=[pd, random, pd]", ["config key 'select.compare'", "listed twice"]),
    ("data.aspects=[h_secret]", ["config key 'data.aspects[0]'", "reserved prefix"]),
    ("align.max_steps=0", ["config key 'align.max_steps'", "must be -1 or >= 1"]),
    ("eval.n_generate=-1", ["config key 'eval.n_generate'", "must be >= 0"]),
])
def test_malformed_or_bad_override_is_a_clear_config_error(override, fragments, capsys):
    assert main(["-q", "config", override]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture()
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("name,key", [("cuda_proxy_device.yaml", "proxy.device"),
                                      ("cuda_align_device.yaml", "align.device")])
def test_missing_device_is_reported_by_run_and_validate_before_compute(name, key, no_cuda,
                                                                       tmp_path, capsys):
    cfg = load_config(BAD / name)  # a GPU config still parses (and prints) anywhere
    with pytest.raises(ConfigError, match=rf"config key '{key}'.*is not available: this "
                                          rf"machine has no CUDA GPU.*Fix: set {key}=cpu"):
        check_devices(cfg)
    run_dir = tmp_path / "run"
    assert main(["-q", "run", "-c", str(BAD / name), f"run_dir={run_dir}"]) == 2
    assert f"config key '{key}'" in capsys.readouterr().err
    assert not run_dir.exists()  # nothing was created, nothing computed
    assert main(["-q", "validate", "--full", "-c", str(BAD / name), f"run_dir={run_dir}"]) == 1
    assert "no CUDA GPU" in capsys.readouterr().out


def test_budget_that_selects_nothing_fails_in_validate_and_run_alike(tmp_path, capsys):
    bad = str(BAD / "budget_selects_nothing.yaml")
    assert main(["-q", "validate", "--full", "-c", bad]) == 1
    out = capsys.readouterr().out
    assert "validation FAILED" in out and "config key 'select.budget'" in out
    assert "train pairs selects 0 pairs" in out and "Fix: set select.budget to at least" in out
    run_dir = tmp_path / "run"
    assert main(["-q", "run", "-c", bad, f"run_dir={run_dir}"]) == 2
    assert "train pairs selects 0 pairs" in capsys.readouterr().err
    assert not (run_dir / "proxy").exists()  # stopped before any training


def test_one_floor_min_pairs_per_aspect_is_what_every_stage_uses(tmp_path, capsys):
    """An aspect with 2 train pairs passes min_pairs_per_aspect=2 in validate AND in the proxy
    stage (which had its own floor of 8); with the default floor both refuse it."""
    data = write_tiny(tmp_path / "d.jsonl", n_inputs=4, n_responses=3)
    held = "aggregate.test_fraction=0.3"  # tiny data has no overall: auto would hold none out
    low = tiny_overrides(data, tmp_path / "run", "aggregate.min_pairs_per_aspect=2", held)
    assert main(["-q", "validate", "--full", *low]) == 0
    assert "'concise': 2" in capsys.readouterr().out
    assert main(["-q", "run", *low]) == 0
    default = tiny_overrides(data, tmp_path / "run2", held)
    assert main(["-q", "validate", "--full", *default]) == 1
    out = capsys.readouterr().out
    assert "too few train pairs" in out and "need >= 8" in out
    assert main(["-q", "run", *default]) == 1  # a data problem, not a usage error
    assert "need >= 8" in capsys.readouterr().err
    assert not (tmp_path / "run2" / "proxy").exists()
