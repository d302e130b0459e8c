"""Value checks of the proxy section's backends: every proxy key either applies to
``proxy.backend`` or is a ConfigError naming it (a key the backend would not read must never be
silently ignored), plus the multihead backend's ranges. Called by checks._validate_values.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError


def _changed(section, name: str) -> bool:
    """Whether ``section.name`` differs from the field's default (the user set it)."""
    f = next(f for f in dataclasses.fields(section) if f.name == name)
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return getattr(section, name) != default


# proxy.multihead.<name>: (lowest allowed value, strict)
_MULTIHEAD_MIN: dict[str, tuple[float, bool]] = {
    "epochs": (1, False), "lr": (0, True), "head_lr": (0, True), "batch_size": (1, False),
    "weight_decay": (0, False), "max_grad_norm": (0, True), "eval_every": (0, False),
    "patience": (0, False), "lora_r": (1, False), "lora_alpha": (1, False)}


def _validate_multihead(p) -> None:
    """proxy.multihead: sizes and rates in range, the stopping share in [0, 0.5]; the
    multihead keys are refused with another backend (they would be silently ignored)."""
    mh = p.multihead
    if p.backend != "multihead":
        for k in ("model_path", "lora", "multihead"):
            if _changed(p, k):
                raise ConfigError(f"proxy.{k}", "applies to proxy.backend=multihead only; the "
                                  f"backend is {p.backend}, so it would be ignored.",
                                  f"remove proxy.{k}, or set proxy.backend=multihead.")
    for name, (lo, strict) in _MULTIHEAD_MIN.items():
        v = getattr(mh, name)
        if (v <= lo) if strict else (v < lo):
            need = f"> {lo}" if strict else f">= {lo}"
            raise ConfigError(f"proxy.multihead.{name}", f"{v!r} must be {need}.",
                              f"set proxy.multihead.{name} to a value {need}.")
    if not 0 <= mh.stop_fraction <= 0.5:
        raise ConfigError("proxy.multihead.stop_fraction", f"{mh.stop_fraction!r} is out of "
                          "range [0, 0.5].", "use e.g. 0.1 (0 turns early stopping off).")


#: proxy keys of each backend that trains nothing (reward/fixed.py), and the keys that only
#: shape a TRAINED proxy: given with the wrong backend they would be silently ignored
_SOURCE_KEYS = {"scores": ("scores_path", "score_columns", "score_kind"),
                "reward_model": ("reward_models", "reward_model", "reward_outputs",
                                 "reward_max_length", "trust_remote_code")}
_TRAINING_ONLY = ("encoder", "head", "features", "l2", "optimizer", "epochs", "lr", "multitask",
                  "shared_l2", "standardize", "hidden", "ensemble", "uncertainty_shrink",
                  "cross_fit", "rho", "tau", "p_r", "val_fraction", "max_pairs_per_aspect")


_FROZEN_ONLY = ("encoder", "head", "features", "l2", "optimizer", "epochs", "lr", "multitask",
                "shared_l2", "standardize", "hidden", "ensemble", "uncertainty_shrink")



def _validate_reward_source(p) -> None:
    """Every proxy key either applies to proxy.backend or is an error naming it."""
    for backend, keys in _SOURCE_KEYS.items():
        for k in keys:
            if p.backend != backend and _changed(p, k):
                raise ConfigError(f"proxy.{k}", f"applies to proxy.backend={backend} only; the "
                                  f"backend is {p.backend}, so it would be ignored.",
                                  f"remove proxy.{k}, or set proxy.backend={backend}.")
    if p.backend == "multihead":  # the frozen heads' settings would be silently ignored
        for k in _FROZEN_ONLY:
            if _changed(p, k):
                raise ConfigError(f"proxy.{k}", "applies to proxy.backend=frozen_encoder; "
                                  "the multihead backend trains one network with its own "
                                  "settings (proxy.multihead.*), so it would be ignored.",
                                  f"remove proxy.{k}, or set it in proxy.multihead if it is "
                                  "there.")
    if p.backend not in _SOURCE_KEYS:
        return
    for k in _TRAINING_ONLY:
        if _changed(p, k):
            raise ConfigError(f"proxy.{k}", f"shapes a trained proxy, and proxy.backend="
                              f"{p.backend} trains nothing (rewards are taken as given), so "
                              "it would be ignored.", f"remove proxy.{k}.")
    if p.backend == "reward_model":
        if bool(p.reward_models) == bool(p.reward_model):
            raise ConfigError("proxy.reward_models", "proxy.backend=reward_model needs exactly "
                              "one of proxy.reward_models (aspect -> model folder) and "
                              "proxy.reward_model (one multi-output model folder).",
                              "set one of them.")
        if p.reward_model and not p.reward_outputs:
            raise ConfigError("proxy.reward_outputs", "proxy.reward_model is one multi-output "
                              "model: which output is which aspect is not known.",
                              "map every aspect: proxy.reward_outputs={aspect: index or label}.")
        if p.reward_outputs and not p.reward_model:
            raise ConfigError("proxy.reward_outputs", "maps outputs of proxy.reward_model, "
                              "which is not set.", "set proxy.reward_model, or remove it.")
        if p.reward_max_length < 8:
            raise ConfigError("proxy.reward_max_length", f"{p.reward_max_length} is too short.",
                              "use >= 8 tokens (1024 is the default).")
