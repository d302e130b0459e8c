"""One typed config for the whole pipeline: dataclasses with help text, loaded from YAML plus
dotted ``key=value`` overrides, validated in one place before any compute starts.

    cfg = load_config("configs/demo.yaml", ["select.budget=0.5", "seed=3"])

Unknown keys and bad values raise :class:`ConfigError` naming the key and the fix
(with a did-you-mean hint for typos).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import ConfigError


def _f(default: Any, help: str, **kw):  # noqa: A002 - mirrors argparse's name
    """A dataclass field carrying its help text (shown by ``pdselect config --help-fields``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class DataConfig:
    source: Literal["usr_topical_chat", "usr_persona_chat", "summeval_op", "ultrafeedback",
                    "helpsteer2", "helpsteer3", "generic", "pairs", "mqm", "mqm_ted_zhen",
                    "mqm_ted_ende"] = _f(
        "usr_topical_chat", "Which reader to use. The usr_*, summeval_op and mqm_ted_* sources "
        "default to the copies bundled with pdselect; mqm reads a WMT MQM TSV from data.path.")
    path: str = _f("", "Local JSON/JSONL/Parquet file or folder, or a Hugging Face dataset id. "
                       "Empty: the bundled copy (usr_*, summeval_op, mqm_ted_* only).")
    hf_split: str = _f("train", "Split to read when `path` is a Hugging Face dataset id.")
    revision: str = _f("", "Hugging Face dataset id only: the git revision (commit sha, tag or "
                           "branch) to load, passed to datasets.load_dataset(revision=...). "
                           "Empty: the default branch.")
    config: str = _f("", "Hugging Face dataset id only: the dataset's configuration (subset) "
                         "name, passed to datasets.load_dataset(name=...). Empty: the default.")
    data_dir: str = _f("", "Hugging Face dataset id only: a folder inside the dataset repo, "
                           "passed to datasets.load_dataset(data_dir=...).")
    aspects: list[str] = _f([], "Aspects to keep (empty: every aspect the source rates). generic "
                                "source: a listed aspect with a column of the same name needs "
                                "no data.aspect_columns entry.")
    shape: Literal["auto", "wide", "long"] = _f(
        "auto", "generic source only: wide = one row per response, one column per aspect; "
                "long = one row per response x aspect (columns aspect + rating). auto: long "
                "when data.columns maps aspect/rating, or the file has an 'aspect' column and "
                "no aspect column is mapped; else wide.")
    columns: dict[str, str] = _f({}, "generic source only: map of canonical name -> your column. "
                                     "Canonical names: input, response, input_id, response_id, "
                                     "overall; long shape also aspect, rating. A name the file "
                                     "already uses (input or prompt, response, input_id, "
                                     "response_id, overall; aspect, rating or score) needs no "
                                     "entry. `data.columns.X=null` removes an entry.")
    aspect_columns: dict[str, str] = _f({}, "generic source only (wide shape): map of aspect "
                                            "name -> column.")
    preference_path: str = _f("", "helpsteer2 only: HelpSteer2's pairwise preference file "
                                  "(preference/preference.jsonl.gz: prompt, response_1, "
                                  "response_2, preference_strength -3..3, negative = response_1 "
                                  "better), read as the hidden overall label of each pair "
                                  "(evaluation only). Records of that schema inside data.path "
                                  "are used the same way.")
    scales: dict[str, list[float]] = _f({}, "generic source only: aspect (or 'overall') -> "
                                            "[min, max] of its rating scale; out-of-scale ratings "
                                            "are rejected.")
    max_rows: Optional[int] = _f(None, "Read at most this many raw records (for quick looks).")
    strict: bool = _f(False, "Fail on the first bad row instead of rejecting it to rejects.jsonl.")
    mqm_weights: dict[str, float] = _f(
        {"Major": 5.0, "Minor": 1.0, "Neutral": 0.0, "Minor:Fluency/Punctuation": 0.1,
         "Non-translation": 25.0},
        "mqm sources only: error weight by severity, or by 'Severity:Category' (full or top-"
        "level category) which wins over the severity alone; 'Non-translation' applies whatever "
        "the severity. Merged over the upstream defaults shown; a severity absent here is "
        "rejected as unknown.")
    mqm_references: Literal["keep", "drop"] = _f(
        "keep", "mqm sources only: keep or drop the human reference translations (systems "
                "named ref, refA, ref-A, ref.B, Human-B, ...) as rated responses.")


@dataclass
class AggregateConfig:
    label_strategy: Literal["uniform", "max_margin", "balanced"] = _f(
        "uniform", "How each pair gets its ONE aspect label among the aspects that decide it: "
        "uniform (seeded draw, the paper's protocol), max_margin (largest scale-normalised "
        "rating gap), balanced (the decided aspect with the fewest pairs so far).")
    tie_tolerance: float = _f(1e-6, "Rating gaps with |gap| <= this count as ties.")
    conflict_level: Optional[float] = _f(
        None, "Target share of train pairs whose aspect label disagrees with the overall "
              "preference (e.g. 0.1, 0.2, 0.3). None: natural level, no subsampling.")
    test_fraction: Union[float, Literal["auto"]] = _f(
        "auto", "Share of INPUTS held out for evaluation (split by input; the held-out inputs "
                "are never selected from). auto: 0.3 when the data has an overall label (the "
                "bundled sets, an overall column, ultrafeedback, helpsteer2 with its preference "
                "file, helpsteer3), else 0 (select from all pairs). The aggregate stage's "
                "meta.json 'holdout' says which was done.")
    min_pairs_per_aspect: int = _f(8, "An aspect with fewer train pairs cannot train a proxy "
                                      "model; the run stops with a message naming it.")
    max_pairs_per_input: Optional[int] = _f(None, "Cap on pairs per input (seeded sample); "
                                                  "None keeps all n(n-1)/2.")


@dataclass
class ProxyConfig:
    backend: Literal["frozen_encoder", "trl"] = _f(
        "frozen_encoder", "frozen_encoder: cached embeddings + one Bradley-Terry head per aspect "
        "(CPU, seconds). trl: fine-tune a sequence-classification model per aspect with TRL's "
        "RewardTrainer (GPU recommended).")
    encoder: str = _f("minilm", "Encoder for frozen_encoder: 'minilm' (the bundled "
                                "all-MiniLM-L6-v2) or a local model folder.")
    max_input_tokens: int = _f(192, "Input (prompt/context) tokens kept, truncated from the LEFT "
                                    "so the latest turn survives.")
    max_response_tokens: int = _f(256, "Response tokens kept (truncated from the right).")
    head: Literal["linear", "mlp"] = _f("linear", "Bradley-Terry head on the frozen features.")
    features: Literal["joint", "response", "both"] = _f(
        "both", "What the head sees: joint = embedding of 'input [SEP] response'; response = "
                "embedding of the response alone; both = concatenation.")
    l2: float = _f(1e-4, "L2 strength of the head (with multitask: of each aspect's own part "
                         "v_k). Weak values let a head fit per-response orderings.")
    optimizer: Literal["adam", "lbfgs"] = _f(
        "adam", "Head optimiser, full batch: adam (`epochs` steps at `lr`) or lbfgs (strong-"
                "Wolfe line search, at most `epochs` iterations, `lr` unused; converges the "
                "convex linear head to its regularised optimum).")
    epochs: int = _f(300, "Full-batch training epochs (adam) or max iterations (lbfgs).")
    lr: float = _f(0.01, "Head learning rate (adam).")
    multitask: bool = _f(False, "Linear heads: the K aspect heads of one fit share a trunk, "
                                "w_k = s + v_k, s trained on all aspects' pairs (L2 shared_l2), "
                                "v_k on D_k (L2 l2); folded into plain linear heads after "
                                "training. +0.01-0.02 conflict AUC on the bundled data, but a "
                                "pair's OWN label then reaches its PD through the trunk, so it "
                                "is off by default (docs/RESULTS.md). Ignored for head=mlp.")
    shared_l2: Optional[float] = _f(None, "L2 strength of the shared trunk (multitask); None: "
                                          "same as l2.")
    standardize: bool = _f(False, "Z-score each feature over the training texts before fitting "
                                  "the heads (folded back into the weights, so scoring is "
                                  "unchanged in form).")
    hidden: int = _f(256, "Hidden width for head=mlp.")
    ensemble: int = _f(1, "Heads per aspect trained on bootstrap resamples; scores are averaged.")
    uncertainty_shrink: float = _f(0.0, "Uncertainty-aware gaps, c >= 0 (needs ensemble >= 2): "
                                        "gap = sign(m) * max(0, |m| - c*s) with m, s the mean "
                                        "and std of the members' gaps, so gaps the ensemble "
                                        "disagrees on stop moving PD. 0: off (the paper).")
    cross_fit: int = _f(0, "Cross-fitting folds F (0 or 1: off). Inputs are split into F folds; "
                           "each pair is scored by models trained on the other folds, so no "
                           "pair's own label reaches its PD and the margin baseline is "
                           "out-of-sample too; proxy accuracy is then out-of-fold over all "
                           "pairs. Costs F trainings (cheap for frozen_encoder).")
    rho: float = _f(0.5, "Length term rho >= 0 in logit = r(w) - r(l) + rho*dlen; fixed during "
                         "training, dropped at scoring (METHOD.md 3.2).")
    length_scale: float = _f(100.0, "dlen = (tokens(y_w) - tokens(y_l)) / length_scale, so rho "
                                    "does not depend on the dataset.")
    tau: Optional[float] = _f(None, "Length-balanced sampling temperature tau; None disables "
                                    "resampling, a large value gives 50/50 (METHOD.md 3.1).")
    p_r: float = _f(1.0, "Size of the resampled training set as a share of |D_k|.")
    val_fraction: float = _f(0.2, "Share of each D_k held out (by input) for proxy accuracy.")
    batch_size: int = _f(64, "Encoder batch size for embedding.")
    device: str = _f("cpu", "torch device for encoding / training (cpu, cuda, cuda:1, mps).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "Encoder precision. bfloat16/float16: the forward runs under torch.autocast "
                "(CPU and CUDA), embeddings stay float32; part of the cache key. auto: "
                "bfloat16 on a CPU with AVX-512-BF16/AMX (2.7x faster there, same conflict "
                "AUC, docs/BENCHMARKS.md), float32 elsewhere (GPUs included until measured).")
    cache_dir: str = _f("", "Embedding cache folder (content-hashed; reused across runs). "
                            "Empty: $PDSELECT_CACHE or ~/.cache/pdselect.")
    # trl backend
    model_path: str = _f("", "trl backend: local sequence-classification model folder or hub id.")
    lora: bool = _f(False, "trl backend: train LoRA adapters instead of all weights.")
    trl_epochs: float = _f(1.0, "trl backend: training epochs per aspect.")
    trl_lr: float = _f(5e-5, "trl backend: learning rate.")
    trl_batch_size: int = _f(8, "trl backend: per-device batch size.")


@dataclass
class ScoreConfig:
    gamma: float = _f(0.9, "gamma-quantile of |delta r_k| used to normalise each aspect before "
                           "clipping to [-1, 1] (METHOD.md 3.4).")
    engine: Literal["local", "ray"] = _f("local", "local: this process. ray: Ray Data "
                                                  "map_batches over Parquet shards.")
    ray_address: str = _f("", "Ray cluster address for engine=ray ('auto', 'ray://host:10001', "
                              "...); empty starts a local Ray. README, Scale: what each worker "
                              "needs.")
    ray_actors: int = _f(2, "engine=ray: size of the fixed actor pool; each actor loads the "
                            "proxy models once and scores batches of pairs.")
    ray_cpus_per_actor: float = _f(1.0, "engine=ray: CPUs reserved per actor (also its torch "
                                        "threads).")
    ray_gpus_per_actor: float = _f(0.0, "engine=ray: GPUs per actor (fractions share a GPU, "
                                        "e.g. 0.5); an actor with a GPU encodes on cuda.")
    ray_batch_size: int = _f(4096, "engine=ray: pairs per map_batches call.")
    shard_size: int = _f(100_000, "Pairs per shard of the score engine (streamed, resumable; a "
                         "smaller pool is one shard).")
    margin_model: bool = _f(True, "Also train one unified reward model on all pairs for the "
                                  "RAF-style margin baseline.")
    weighting: Literal["equal", "reliability", "user"] = _f(
        "equal", "Aspect weights w_k in PD = -sum_{k' != k} w_k' * delta_n_k'. equal: the "
                 "paper's w = 1. reliability: w_k = max(0, 2*acc_k - 1) from each proxy's "
                 "held-out accuracy (no overall label needed; near-chance aspects stop adding "
                 "noise). user: score.aspect_weights.")
    aspect_weights: dict[str, float] = _f({}, "weighting=user: aspect -> weight >= 0 (aspects "
                                              "not listed get 1).")


@dataclass
class SelectConfig:
    method: Literal["pd", "pd_high", "random", "full", "margin", "pd_rati"] = _f(
        "pd", "Selector: pd (most negative PD, the method), pd_high (most positive, ablation), "
              "random, full, margin (largest unified-RM margin, RAF-like), pd_rati (PD from true "
              "ratings: an oracle, needs all aspects rated).")
    budget: float = _f(0.3, "Share of pairs to keep, in (0, 1].")
    budget_count: Optional[int] = _f(None, "Keep exactly this many pairs (overrides budget).")
    stratify_by_aspect: bool = _f(False, "Split the budget across aspects in proportion to "
                                         "their pair counts, then select within each.")
    compare: list[str] = _f(["pd", "pd_rati", "margin", "random"],
                            "Selectors compared side by side in the report.")
    output_format: Literal["parquet", "jsonl"] = _f(
        "parquet", "File format of the TRL-ready dataset, written alone in select/dpo/ "
                   "(train-00000.parquet or .jsonl) so `load_dataset(<run>/select/dpo)` and "
                   "`trl dpo --dataset_name <run>/select/dpo` read it.")
    chat_format: Literal["standard", "conversational"] = _f(
        "standard", "TRL dataset format. standard: prompt/chosen/rejected as text. "
                    "conversational: message lists (prompt = user message(s), chosen/rejected "
                    "= one assistant message), exactly what `pdselect align` trains on; TRL "
                    "then applies the policy's chat template.")
    inspect_top: int = _f(10, "Kept and dropped pairs listed (each) in report.html, with their "
                              "per-aspect gaps; every pair is in select/inspect.parquet.")


@dataclass
class AlignConfig:
    policy: str = _f("smollm2", "'smollm2' (bundled SmolLM2-135M-Instruct) or a local/hub causal "
                                "LM path.")
    loss: Literal["dpo", "dfpo"] = _f("dpo", "dpo: TRL DPO on the selection. dfpo: the paper's "
                                             "-log sigmoid(K*M + PD) on the full data.")
    beta: float = _f(0.1, "DPO beta.")
    lr: float = _f(5e-5, "Learning rate (TRL's 1e-6 default barely moves small models).")
    epochs: float = _f(1.0, "Training epochs.")
    max_steps: int = _f(-1, "Stop after this many steps (-1: epochs decide).")
    batch_size: int = _f(4, "Per-device batch size.")
    grad_accum: int = _f(1, "Gradient accumulation steps.")
    max_length: int = _f(256, "Prompt+completion tokens; prompts truncated from the left.")
    lora: bool = _f(True, "LoRA adapters (default on CPU) instead of full fine-tuning.")
    lora_r: int = _f(16, "LoRA rank.")
    device: str = _f("auto", "auto, cpu or cuda.")


@dataclass
class EvalConfig:
    probe_l2: list[float] = _f([1e-2, 1e-4], "L2 strengths of the cheap Bradley-Terry probe "
                                             "trained on each selection.")
    n_generate: int = _f(16, "Held-out inputs the aligned and the starting policy generate for "
                             "(scored by the oracle judge); 0 skips generation.")
    max_new_tokens: int = _f(48, "Tokens generated per held-out input (greedy).")


@dataclass
class ExperimentConfig:
    datasets: list[str] = _f(["usr_topical_chat", "usr_persona_chat", "summeval_op"],
                             "Bundled datasets the grid runs on.")
    conflict_levels: list[Optional[float]] = _f([None, 0.1, 0.2, 0.3],
                                                "Conflict levels (null = natural).")
    budgets: list[float] = _f([0.1, 0.3, 0.5], "Budgets for the subset methods.")
    seeds: list[int] = _f([0, 1, 2, 3, 4], "Seeds (aspect draw, split, subsampling, models).")
    methods: list[str] = _f(["ALL", "OVA", "AVG", "DFPO", "RAND", "RAF", "PD-rati", "PD",
                             "PD-high", "PD-nl"], "Methods (see experiments/grid.py).")
    probe_l2: list[float] = _f([1e-2, 1e-4], "L2 strengths of the cheap preference probe.")
    dpo_datasets: list[str] = _f([], "Datasets that also get the DPO policy level (slow on CPU).")
    dpo_conflict_levels: list[Optional[float]] = _f([None, 0.3], "Conflict levels for DPO.")
    dpo_methods: list[str] = _f(["ALL", "PD", "RAND", "PD-high"], "Methods trained with DPO "
                                "(budget 0.3 for subset methods).")
    dpo_seeds: list[int] = _f([0], "Seeds for the DPO level.")
    dpo_eval_pairs: int = _f(0, "Held-out pairs (with an overall preference) the DPO level "
                                "evaluates on, a seeded sample; 0 = all of them.")


@dataclass
class RunConfig:
    run_dir: str = _f("runs/demo", "Where artifacts go; finished stages are skipped on re-run.")
    seed: int = _f(0, "Seed for every random choice (written to the manifest).")
    data: DataConfig = field(default_factory=DataConfig)
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def validate(self) -> "RunConfig":
        _validate_values(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- value checks
_RANGES: dict[str, tuple[float, float, bool]] = {
    # key: (lo, hi, lo_inclusive)
    "aggregate.test_fraction": (0.0, 0.95, True),
    "aggregate.conflict_level": (0.0, 0.95, False),
    "proxy.val_fraction": (0.0, 0.9, True),
    "proxy.p_r": (0.0, 10.0, False),
    "score.gamma": (0.0, 1.0, False),
    "select.budget": (0.0, 1.0, False),
}


def _validate_values(cfg: RunConfig) -> None:
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
    from .select.selectors import SELECTORS  # local import: select imports nothing from config
    for m in cfg.select.compare:
        if m not in SELECTORS:
            raise ConfigError("select.compare", f"unknown selector {m!r}.",
                              f"choose from {sorted(SELECTORS)}" + _hint(m, SELECTORS))
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
    for k, w in cfg.data.mqm_weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w < math.inf:
            raise ConfigError(f"data.mqm_weights.{k}", f"{w!r} is not a weight >= 0.",
                              "give each severity a finite number >= 0 (e.g. Major: 5).")
    _validate_experiment(cfg.experiment)
    if cfg.data.max_rows is not None and cfg.data.max_rows < 1:
        raise ConfigError("data.max_rows", f"{cfg.data.max_rows!r} must be >= 1 or null.",
                          "use null to read every record, or a positive count.")
    _validate_seeds(cfg)
    _validate_sizes(cfg)
    _validate_lists(cfg)
    _validate_aspect_names(cfg)
    _validate_run_dir(cfg.run_dir)
    if cfg.select.method == "margin" and not cfg.score.margin_model:
        raise ConfigError("select.method", "'margin' needs the unified margin model, and "
                          "score.margin_model is false.",
                          "set score.margin_model=true, or choose another selector.")
    _validate_device("proxy.device", cfg.proxy.device, allow_auto=False, probe=False)
    _validate_device("align.device", cfg.align.device, allow_auto=True, probe=False)


def check_devices(cfg: RunConfig) -> None:
    """The configured devices exist on THIS machine. Not part of loading (a GPU config must
    still parse and print on a laptop); run, the stage commands, validate and experiment call
    it before any compute."""
    _validate_device("proxy.device", cfg.proxy.device, allow_auto=False)
    _validate_device("align.device", cfg.align.device, allow_auto=True)


SEED_MAX = 2**32 - 1  # numpy's SeedSequence / torch.manual_seed accept 0 .. 2**32-1 everywhere


def _validate_seeds(cfg: RunConfig) -> None:
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
    ("proxy.hidden", 1, False), ("proxy.trl_batch_size", 1, False),
    ("proxy.trl_epochs", 0, True), ("proxy.trl_lr", 0, True), ("proxy.lr", 0, True),
    ("align.beta", 0, True), ("align.lr", 0, True), ("align.epochs", 0, True),
    ("align.batch_size", 1, False), ("align.grad_accum", 1, False),
    ("align.max_length", 1, False), ("align.lora_r", 1, False),
    ("eval.n_generate", 0, False), ("eval.max_new_tokens", 1, False),
    ("experiment.dpo_eval_pairs", 0, False), ("select.inspect_top", 0, False),
    ("score.ray_actors", 1, False), ("score.ray_batch_size", 1, False),
    ("score.ray_cpus_per_actor", 0, False), ("score.ray_gpus_per_actor", 0, False),
    ("proxy.cross_fit", 0, False), ("proxy.uncertainty_shrink", 0, False),
]


def _get(cfg: RunConfig, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _validate_sizes(cfg: RunConfig) -> None:
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


def _validate_lists(cfg: RunConfig) -> None:
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


def _validate_aspect_names(cfg: RunConfig) -> None:
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


def _validate_experiment(ex: "ExperimentConfig") -> None:
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


# ----------------------------------------------------------------------------- loading
def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for tp_ in inner:  # e.g. Union[float, Literal["auto"]]: the first type that fits
            try:
                return _coerce(key, tp_, value)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(key, errors[0].problem, " Or: ".join(e.fix for e in errors if e.fix))
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"{value!r} is not allowed.",
                              f"choose one of {list(args)}" + _hint(str(value), map(str, args)))
        return value
    if origin is list:
        if value is None:  # `key=null` on the command line empties a list
            return []
        if not isinstance(value, list):
            raise ConfigError(key, f"{value!r} is not a list.", "write a YAML list, e.g. [a, b].")
        return [_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value)]
    if origin is dict:
        if value is None:  # `data.columns=null` unsets the whole mapping
            return {}
        if not isinstance(value, dict):
            raise ConfigError(key, f"{value!r} is not a mapping.", "write a YAML mapping.")
        # `data.columns.input=null` unsets one entry (a value no mapping can hold)
        return {str(k): _coerce(f"{key}.{k}", args[1], v) for k, v in value.items()
                if v is not None}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"{value!r} is not a number.", "write a number, e.g. 0.3.")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(key, f"{value!r} is not a finite number (NaN and infinity are "
                                   "not allowed).", "write a finite number, e.g. 0.3.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"{value!r} is not an integer.", "write a whole number.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"{value!r} is not true/false.", "write true or false.")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(key, f"{value!r} is not a string.", "quote the value.")
        return str(value)
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in fields:
            raise ConfigError(key, "unknown key.", "remove it or correct its name" + _hint(k, fields))
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, dict):
                raise ConfigError(key, f"is a section, got {v!r}.", f"write {key}: {{...}}.")
            kwargs[k] = _build(tp, v, prefix=f"{key}.")
        else:
            kwargs[k] = _coerce(key, tp, v)
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"'{p}' is not a section.", "check the key path.")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key=value.",
                              "e.g. select.budget=0.5")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p.strip() or p != p.strip() for p in parts):
            raise ConfigError(item, f"the key {key!r} before '=' is empty or has an empty part.",
                              "write a dotted key such as select.budget=0.5 (no spaces, no "
                              "'..').")
        value = _yaml_load(raw, f"override {item!r}", key=key) if raw.strip() else ""
        _set_dotted(out, key, value)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (YAML would keep the last
    one silently, so a config could say two things and mean one)."""

    source = "<yaml>"

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let PyYAML report it
                continue
            if first is not None:
                raise ConfigError(str(key), f"duplicate key in {self.source} at line {line} "
                                            f"(first set at line {first}).",
                                  "keep one of the two lines.")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_load(text: str, source: str, key: str | None = None):
    """Parse YAML text; syntax errors and duplicate keys become ConfigError naming ``source``
    (and the override's ``key`` for a value given on the command line)."""
    loader = _UniqueKeyLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if key is not None:
            raise ConfigError(key, f"the value {text!r} is not valid YAML{where}: {problem}.",
                              "fix the value's YAML syntax (lists: [a, b]; mappings: {a: 1}; "
                              "quote strings containing ':', '[', '{' or '#').") from None
        raise ConfigError(source, f"is not valid YAML{where}: {problem}.",
                          "fix the YAML syntax (quote values containing ':', '[', '{' or "
                          "'#').") from None
    finally:
        loader.dispose()


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> RunConfig:
    """Read YAML (optional), apply dotted overrides, type-check and validate."""
    data: dict = dict(base or {})
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError("config", f"file {p} does not exist.", "check the path.")
        if not p.is_file():
            raise ConfigError("config", f"{p} is not a file.", "pass a YAML file with -c.")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("config", f"cannot read {p}: {e}.",
                              "check the file's permissions and that it is UTF-8 text.") from None
        loaded = _yaml_load(text, str(p)) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(str(p), "top level must be a mapping.", "write key: value lines.")
        _merge(data, loaded)
    _merge(data, parse_overrides(overrides or []))
    return _build(RunConfig, data).validate()


def config_from_dict(data: dict) -> RunConfig:
    return _build(RunConfig, data).validate()


def describe_fields(cls=RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field: the CLI prints this as documentation."""
    rows = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{prefix}{f.name}", repr(default), f.metadata.get("help", "")))
    return rows
