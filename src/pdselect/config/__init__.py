"""One typed config for the whole pipeline: dataclasses with help text, loaded from YAML plus
dotted ``key=value`` overrides, validated in one place before any compute starts.

    cfg = load_config("configs/demo.yaml", ["select.budget=0.5", "seed=3"])

Unknown keys and bad values raise :class:`ConfigError` naming the key and the fix
(with a did-you-mean hint for typos). ``schema`` holds the sections, ``loading`` the YAML and
overrides, ``checks`` the value checks.
"""

from .checks import aspect_name_problem, check_devices
from .loading import config_from_dict, describe_fields, load_config, parse_overrides
from .schema import (AggregateConfig, AlignConfig, DataConfig, EvalConfig, ExperimentConfig,
                     ProxyConfig, RunConfig, ScoreConfig, SelectConfig)

__all__ = ["AggregateConfig", "AlignConfig", "DataConfig", "EvalConfig", "ExperimentConfig",
           "ProxyConfig", "RunConfig", "ScoreConfig", "SelectConfig", "aspect_name_problem",
           "check_devices", "config_from_dict", "describe_fields", "load_config",
           "parse_overrides"]
