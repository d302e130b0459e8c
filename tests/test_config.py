"""Config: typed loading, overrides, clear errors before any compute; every shipped config parses."""

from pathlib import Path

import pytest

from pdselect.config import describe_fields, load_config
from pdselect.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    if path.name.startswith("accelerate"):
        pytest.skip("accelerate's own config, not a pdselect config")
    load_config(path)


def test_overrides_and_types():
    cfg = load_config(None, ["select.budget=0.5", "seed=3", "proxy.tau=null",
                             "data.aspects=[natural, engaging]", "proxy.l2=1"])
    assert cfg.select.budget == 0.5 and cfg.seed == 3 and cfg.proxy.tau is None
    assert cfg.data.aspects == ["natural", "engaging"]
    assert cfg.proxy.l2 == 1.0 and isinstance(cfg.proxy.l2, float)


@pytest.mark.parametrize("override,match", [
    (["select.budgte=0.5"], "did you mean 'budget'"),
    (["selec.budget=0.5"], "did you mean 'select'"),
    (["select.budget=0"], "out of range"),
    (["select.budget=1.5"], "out of range"),
    (["select.budget=.nan"], "not a finite number"),  # was "out of range": NaN is refused at parse
    (["select.budget=abc"], "not a number"),
    (["select.method=pdd"], "did you mean 'pd'"),
    (["select.compare=[pd, randm]"], "did you mean 'random'"),
    (["select.budget_count=0"], "budget_count"),
    (["proxy.rho=-1"], "must be >= 0"),
    (["proxy.tau=0"], "must be > 0"),
    (["seed=1.5"], "not an integer"),
    (["aggregate.conflict_level=1.2"], "out of range"),
    (["data.source=ultrafeedback"], "no bundled copy"),
    (["select=3"], "is a section"),
    (["budget"], "key=value"),
    (["proxy.cross_fit=-3"], "proxy.cross_fit.*must be >= 0"),
    (["proxy.uncertainty_shrink=-1"], "proxy.uncertainty_shrink.*must be >= 0"),
    (["score.aspect_weights={a: -1}"], "score.aspect_weights.a.*must be a number >= 0"),
    (["score.aspect_weights={a: yes}"], "score.aspect_weights.a.*not a number"),
])
def test_bad_values_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, override)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("select: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_every_field_has_help():
    rows = describe_fields()
    assert len(rows) > 40
    assert all(help_ for _, _, help_ in rows), [k for k, _, h in rows if not h]


def test_exponent_without_dot_is_a_number():
    # YAML 1.1 reads 1e-4 as a string; the config accepts it as the number it means
    assert load_config(None, ["proxy.l2=1e-4"]).proxy.l2 == 1e-4
