"""Value checks of a loaded config (ranges, sizes, seeds, lists, aspect names, run dir,
devices, experiment methods): each failure is a ConfigError naming the key and the fix.
Functions take the RunConfig (``cfg``) from :mod:`.schema`; this module does not import it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path

from ..errors import ConfigError
from .checks_proxy import _validate_multihead, _validate_reward_source


_RANGES: dict[str, tuple[float, float, bool]] = {
    # key: (lo, hi, lo_inclusive)
    "aggregate.test_fraction": (0.0, 0.95, True),
    "aggregate.conflict_level": (0.0, 0.95, False),
    "proxy.val_fraction": (0.0, 0.9, True),
    "proxy.p_r": (0.0, 10.0, False),
    "score.gamma": (0.0, 1.0, False),
    "select.budget": (0.0, 1.0, False),
}


def _validate_values(cfg) -> None:
    """Every value check, in a fixed order: the first failure is the one reported."""
    _validate_ranges(cfg)
    _validate_signs(cfg)
    _validate_compare(cfg)
    _validate_select_rules(cfg.select, cfg)
    _validate_data_path(cfg)
    _validate_mqm_weights(cfg)
    _validate_experiment(cfg.experiment)
    if cfg.data.max_rows is not None and cfg.data.max_rows < 1:
        raise ConfigError("data.max_rows", f"{cfg.data.max_rows!r} must be >= 1 or null.",
                          "use null to read every record, or a positive count.")
    _validate_seeds(cfg)
    _validate_sizes(cfg)
    _validate_multihead(cfg.proxy)
    _validate_reward_source(cfg.proxy)
    _validate_lists(cfg)
    _validate_aspect_names(cfg)
    _validate_run_dir(cfg.run_dir)
    if cfg.select.method == "margin" and not cfg.score.margin_model:
        raise ConfigError("select.method", "'margin' needs the unified margin model, and "
                          "score.margin_model is false.",
                          "set score.margin_model=true, or choose another selector.")
    _validate_device("proxy.device", cfg.proxy.device, allow_auto=False, probe=False)
    _validate_device("align.device", cfg.align.device, allow_auto=True, probe=False)


def _validate_ranges(cfg) -> None:
    """Every :data:`_RANGES` key that is set (not None / "auto") lies in its interval."""
    for key, (lo, hi, lo_inc) in _RANGES.items():
        section, name = key.split(".")
        v = getattr(getattr(cfg, section), name)
        if v is None or isinstance(v, str):  # None / "auto"
            continue
        ok = (v >= lo if lo_inc else v > lo) and v <= hi and not math.isnan(v)
        if not ok:
            lb = "[" if lo_inc else "("
            raise ConfigError(key, f"{v!r} is out of range {lb}{lo}, {hi}].",
                              f"set {key} to a value in that range.")


def _validate_signs(cfg) -> None:
    """Penalties and tolerances >= 0; tau, epochs, counts and scales > 0; budget_count >= 1."""
    for key in ("proxy.rho", "proxy.l2", "aggregate.tie_tolerance"):
        section, name = key.split(".")
        v = getattr(getattr(cfg, section), name)
        if not v >= 0:
            raise ConfigError(key, f"{v!r} must be >= 0.", f"set {key} to 0 or more.")
    if cfg.proxy.tau is not None and not cfg.proxy.tau > 0:
        raise ConfigError("proxy.tau", f"{cfg.proxy.tau!r} must be > 0 or null.",
                          "use null to disable length-balanced sampling.")
    for key in ("proxy.epochs", "proxy.ensemble", "proxy.batch_size", "proxy.length_scale",
                "aggregate.min_pairs_per_aspect", "score.shard_size"):
        section, name = key.split(".")
        v = getattr(getattr(cfg, section), name)
        if not v > 0:
            raise ConfigError(key, f"{v!r} must be > 0.", f"set {key} to a positive number.")
    bc = cfg.select.budget_count
    if bc is not None and bc < 1:
        raise ConfigError("select.budget_count", f"{bc!r} must be >= 1 or null.",
                          "use select.budget for a fraction, or a positive count.")


def _validate_compare(cfg) -> None:
    from ..select.selectors import SELECTORS  # local import: select imports nothing from config
    for m in cfg.select.compare:
        if m not in SELECTORS:
            raise ConfigError("select.compare", f"unknown selector {m!r}.",
                              f"choose from {sorted(SELECTORS)}" + _hint(m, SELECTORS))


def _validate_select_rules(s, cfg) -> None:
    """select.combine / pd_threshold / min_margin / irg: each names a selector that runs."""
    from ..select.selectors import COMBINE_OPS, SELECTORS

    members = [s.method]
    if s.combine and s.method != "combine":
        raise ConfigError("select.combine", f"is set ({s.combine!r}) but select.method is "
                          f"{s.method!r}.", "set select.method=combine, or select.combine={}.")
    if s.method == "combine":
        extra = sorted(set(s.combine) - {"op", "methods"})
        members = list(s.combine.get("methods") or [])
        if extra or s.combine.get("op") not in COMBINE_OPS or len(members) < 2:
            raise ConfigError("select.combine", f"{s.combine!r} is not {{op: and|or, methods: "
                              "[two or more selectors]}.", "e.g. select.combine={op: and, "
                              "methods: [pd, margin]}.")
        for m in members:
            if m not in SELECTORS:
                raise ConfigError("select.combine.methods", f"unknown selector {m!r}.",
                                  f"choose from {sorted(SELECTORS)}" + _hint(m, SELECTORS))
    for key, v, sel in (("select.pd_threshold", s.pd_threshold, "pd"),
                        ("select.min_margin", s.min_margin, "margin")):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(key, f"{v!r} is not a finite number.", f"set {key} to e.g. 0.")
        if sel not in members:
            raise ConfigError(key, f"is set but the {sel} selector does not run (select.method="
                              f"{s.method}).", f"set select.method={sel}, or add {sel} to "
                              f"select.combine.methods, or {key}=null.")
    if "margin" in members and not cfg.score.margin_model:
        raise ConfigError("select.method", "'margin' needs the unified margin model, and "
                          "score.margin_model is false.",
                          "set score.margin_model=true, or choose another selector.")
    if "irg" in members and not cfg.align.policy:
        raise ConfigError("select.method", "'irg' ranks pairs by a DPO policy's implicit reward "
                          "and align.policy is empty.", "set align.policy (e.g. smollm2 or a "
                          "local model folder), or choose another selector.")


def _validate_data_path(cfg) -> None:
    """Sources without a bundled copy need data.path."""
    if cfg.data.source == "generic" and "response" not in cfg.data.columns and not cfg.data.path:
        raise ConfigError("data.path", "the generic source needs a path.",
                          "set data.path to your JSON/JSONL/Parquet file.")
    if cfg.data.source == "mqm" and not cfg.data.path:
        raise ConfigError("data.path", "source 'mqm' has no bundled copy.",
                          "set data.path to a WMT MQM TSV (.tsv, .tsv.gz, .tar.gz) or folder, "
                          "or use source mqm_ted_zhen / mqm_ted_ende (bundled).")
    if cfg.data.source in ("ultrafeedback", "helpsteer2", "helpsteer3", "generic",
                           "pairs") and not cfg.data.path:
        raise ConfigError("data.path", f"source {cfg.data.source!r} has no bundled copy.",
                          "set data.path to a local file or a Hugging Face dataset id.")


def _validate_mqm_weights(cfg) -> None:
    for k, w in cfg.data.mqm_weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w < math.inf:
            raise ConfigError(f"data.mqm_weights.{k}", f"{w!r} is not a weight >= 0.",
                              "give each severity a finite number >= 0 (e.g. Major: 5).")


def check_devices(cfg) -> None:
    """The configured devices exist on THIS machine. Not part of loading (a GPU config must
    still parse and print on a laptop); run, the stage commands, validate and experiment call
    it before any compute."""
    _validate_device("proxy.device", cfg.proxy.device, allow_auto=False)
    _validate_device("align.device", cfg.align.device, allow_auto=True)


SEED_MAX = 2**32 - 1  # numpy's SeedSequence / torch.manual_seed accept 0 .. 2**32-1 everywhere


def _validate_seeds(cfg) -> None:
    seeds = [("seed", cfg.seed)] + [(f"experiment.seeds[{i}]", v)
                                     for i, v in enumerate(cfg.experiment.seeds)]
    seeds += [(f"experiment.dpo_seeds[{i}]", v) for i, v in enumerate(cfg.experiment.dpo_seeds)]
    for key, v in seeds:
        if not 0 <= v <= SEED_MAX:
            raise ConfigError(key, f"{v!r} is out of range [0, {SEED_MAX}].",
                              "use a seed between 0 and 2**32-1, e.g. 0.")


# (key, lowest allowed value, strict): every size / count / step the pipeline takes
_POSITIVE: list[tuple[str, float, bool]] = [
    ("proxy.max_input_tokens", 1, False), ("proxy.max_response_tokens", 1, False),
    ("proxy.hidden", 1, False), ("proxy.lr", 0, True),
    ("align.beta", 0, True), ("align.lr", 0, True), ("align.epochs", 0, True),
    ("align.batch_size", 1, False), ("align.grad_accum", 1, False),
    ("align.max_length", 1, False), ("align.lora_r", 1, False),
    ("eval.n_generate", 0, False), ("eval.max_new_tokens", 1, False),
    ("experiment.dpo_eval_pairs", 0, False), ("select.inspect_top", 0, False),
    ("score.ray_actors", 1, False), ("score.ray_batch_size", 1, False),
    ("score.ray_cpus_per_actor", 0, False), ("score.ray_gpus_per_actor", 0, False),
    ("proxy.cross_fit", 0, False), ("proxy.uncertainty_shrink", 0, False),
]


def _get(cfg, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _validate_sizes(cfg) -> None:
    for key, lo, strict in _POSITIVE:
        v = _get(cfg, key)
        if (v <= lo) if strict else (v < lo):
            need = f"> {lo}" if strict else f">= {lo}"
            raise ConfigError(key, f"{v!r} must be {need}.", f"set {key} to a value {need}.")
    if cfg.align.max_steps != -1 and cfg.align.max_steps < 1:
        raise ConfigError("align.max_steps", f"{cfg.align.max_steps!r} must be -1 or >= 1.",
                          "use -1 to let align.epochs decide, or a positive step count.")
    mp = cfg.aggregate.max_pairs_per_input
    if mp is not None and mp < 1:
        raise ConfigError("aggregate.max_pairs_per_input", f"{mp!r} must be >= 1 or null.",
                          "use null to keep every pair of an input.")
    cap = cfg.proxy.max_pairs_per_aspect
    if cap is not None and cap < cfg.aggregate.min_pairs_per_aspect:
        raise ConfigError("proxy.max_pairs_per_aspect", f"{cap!r} is below "
                          f"aggregate.min_pairs_per_aspect={cfg.aggregate.min_pairs_per_aspect}.",
                          "use null (all pairs) or a cap of at least the floor, e.g. 50000.")
    if cfg.proxy.shared_l2 is not None and cfg.proxy.shared_l2 < 0:
        raise ConfigError("proxy.shared_l2", f"{cfg.proxy.shared_l2!r} must be >= 0 or null.",
                          "use null for the same strength as proxy.l2.")
    for key, values in (("eval.probe_l2", cfg.eval.probe_l2),
                        ("experiment.probe_l2", cfg.experiment.probe_l2)):
        for i, v in enumerate(values):
            if v < 0:
                raise ConfigError(f"{key}[{i}]", f"{v!r} must be >= 0.",
                                  "L2 strengths are 0 or more.")
    for a, w in cfg.score.aspect_weights.items():
        if not w >= 0:  # the type (a finite number) is checked when the value is parsed
            raise ConfigError(f"score.aspect_weights.{a}", f"{w!r} must be a number >= 0.",
                              "give each aspect a weight of 0 or more (1: the paper's).")
    for a, sc in cfg.data.scales.items():
        if len(sc) != 2 or not sc[0] < sc[1]:
            raise ConfigError(f"data.scales.{a}", f"{sc!r} is not [min, max] with min < max.",
                              f"write data.scales.{a}: [1, 5].")


def _validate_lists(cfg) -> None:
    lists = {"data.aspects": cfg.data.aspects, "select.compare": cfg.select.compare,
             "eval.probe_l2": cfg.eval.probe_l2}
    lists.update({f"experiment.{f.name}": getattr(cfg.experiment, f.name)
                  for f in dataclasses.fields(cfg.experiment)
                  if isinstance(getattr(cfg.experiment, f.name), list)})
    for key, values in lists.items():
        seen: set = set()
        for v in values:
            if v in seen:
                raise ConfigError(key, f"{v!r} is listed twice in {values!r}.",
                                  "list each entry once.")
            seen.add(v)


# column names the pair / score / selection tables already use: an aspect with one of these
# names would overwrite them (data/schema.py, score/table.py, run/pipeline.stage_select)
RESERVED_NAMES = {"pair_id", "input_id", "input", "response_id", "response", "chosen",
                  "rejected", "aspect", "split", "chosen_id", "rejected_id", "len_chosen",
                  "len_rejected", "overall", "pd", "pd_rati", "margin", "selected", "rank",
                  "method", "prompt", "unified"}
RESERVED_PREFIXES = ("h_", "gap__", "norm__")


def aspect_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an aspect name, or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name in RESERVED_NAMES:
        return "is a reserved column name"
    if name.startswith(RESERVED_PREFIXES):
        return f"starts with a reserved prefix ({', '.join(RESERVED_PREFIXES)})"
    if name != name.strip() or any(c in name for c in "\n\r\t"):
        return "has leading/trailing spaces or control characters"
    return None


def _validate_aspect_names(cfg) -> None:
    names = [(f"data.aspects[{i}]", a) for i, a in enumerate(cfg.data.aspects)]
    names += [(f"data.aspect_columns.{a}", a) for a in cfg.data.aspect_columns]
    for key, a in names:
        problem = aspect_name_problem(a)
        if problem:
            raise ConfigError(key, f"aspect name {a!r} {problem}; reserved: "
                              f"{sorted(RESERVED_NAMES)} and prefixes {list(RESERVED_PREFIXES)}.",
                              "rename the aspect (e.g. via data.aspect_columns: {my_name: "
                              "column}).")


def _validate_run_dir(run_dir: str) -> None:
    if not str(run_dir).strip():
        raise ConfigError("run_dir", "is empty.", "set run_dir to a new or empty folder, "
                          "e.g. run_dir=runs/my_run.")
    p = Path(run_dir).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError("run_dir", f"{run_dir!r} is an existing file, not a folder.",
                          "choose a new or empty folder, e.g. run_dir=runs/my_run.")


def _validate_device(key: str, device: str, allow_auto: bool, probe: bool = True) -> None:
    """A device string torch understands and this machine has (checked before any compute)."""
    import re

    d = device.strip().lower()
    if d == "cpu" or (allow_auto and d == "auto"):
        return
    m = re.fullmatch(r"(cuda|mps)(?::(\d+))?", d)
    if not m:
        choices = "auto, cpu, cuda, cuda:N, mps" if allow_auto else "cpu, cuda, cuda:N, mps"
        raise ConfigError(key, f"{device!r} is not a device.", f"use one of {choices}.")
    if not probe:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        raise ConfigError(key, f"{device!r} needs torch, which is not installed.",
                          f"install torch or set {key}=cpu.") from None
    if m.group(1) == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(key, f"{device!r} is not available on this machine (no Apple "
                              "MPS).", f"set {key}=cpu.")
        return
    if not torch.cuda.is_available():
        raise ConfigError(key, f"{device!r} is not available: this machine has no CUDA GPU "
                          "(or torch was built without CUDA).", f"set {key}=cpu.")
    idx = int(m.group(2) or 0)
    if idx >= torch.cuda.device_count():
        raise ConfigError(key, f"{device!r}: this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s), numbered from 0.", f"set {key}=cuda:0 (or cpu).")


_EXPERIMENT_METHODS = ["ALL", "OVA", "AVG", "DFPO", "RAND", "RAF", "PD-rati", "PD", "PD-high",
                       "PD-nl"]
_BUNDLED = ["usr_topical_chat", "usr_persona_chat", "summeval_op", "mqm_ted_zhen", "mqm_ted_ende"]


def _validate_experiment(ex) -> None:
    for key, values, allowed in (("experiment.methods", ex.methods, _EXPERIMENT_METHODS),
                                 ("experiment.dpo_methods", ex.dpo_methods,
                                  _EXPERIMENT_METHODS + ["IRG"]),
                                 ("experiment.datasets", ex.datasets, _BUNDLED),
                                 ("experiment.dpo_datasets", ex.dpo_datasets, _BUNDLED)):
        for v in values:
            if v not in allowed:
                raise ConfigError(key, f"unknown entry {v!r}.",
                                  f"choose from {allowed}" + _hint(v, allowed))
    for b in ex.budgets:
        if not 0 < b <= 1:
            raise ConfigError("experiment.budgets", f"{b!r} is not in (0, 1].", "")
    for c in ex.conflict_levels + ex.dpo_conflict_levels:
        if c is not None and not 0 < c < 0.95:
            raise ConfigError("experiment.conflict_levels", f"{c!r} is not in (0, 0.95).",
                              "use null for the natural level.")


def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
