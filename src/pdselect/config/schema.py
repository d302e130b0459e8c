"""The config's schema: one dataclass per section, every field with its default and help text
(``pdselect config --fields`` lists them). Loading is in :mod:`.loading`, value checks in
:mod:`.checks`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from .checks import _validate_values


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
    always_hash: bool = _f(
        False, "Hash every input file's bytes for the stage fingerprints, whatever its size. "
               "Default false: files of 64 MiB or more count by size + mtime, so an in-place "
               "edit that keeps the size and restores the mtime goes unseen; true costs one "
               "read of the input per run.")


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
class MultiheadConfig:
    """proxy.multihead: training of the one-backbone multi-head proxy (reward/multihead.py)."""
    epochs: int = _f(3, "Passes over the training pairs (early stopping may keep an earlier "
                        "evaluation's weights).")
    lr: float = _f(3e-5, "AdamW learning rate of the backbone (LoRA: of the adapters).")
    head_lr: float = _f(1e-3, "AdamW learning rate of the scalar heads (they start at zero).")
    batch_size: int = _f(16, "Pairs per optimiser step (length-sorted batches mixing all "
                             "aspects).")
    weight_decay: float = _f(0.01, "AdamW weight decay of the backbone (heads: none).")
    max_grad_norm: float = _f(1.0, "Gradient clipping (global norm).")
    stop_fraction: float = _f(0.1, "Share of the training INPUTS held out (seeded, by input) "
                                   "as the early-stopping set; 0: no early stopping.")
    eval_every: int = _f(0, "Evaluate the stopping set every this many steps (0: once per "
                            "epoch); the best evaluation's weights are kept.")
    patience: int = _f(2, "Stop after this many evaluations without a better stopping loss "
                          "(0: never stop early, still keep the best).")
    lora_r: int = _f(16, "LoRA rank (proxy.lora=true).")
    lora_alpha: int = _f(32, "LoRA alpha (proxy.lora=true).")


@dataclass
class ProxyConfig:
    backend: Literal["frozen_encoder", "multihead", "scores", "reward_model"] = _f(
        "frozen_encoder", "frozen_encoder: cached embeddings + one Bradley-Terry head per aspect "
        "(CPU, seconds). multihead: ONE fine-tuned backbone (proxy.model_path) with a scalar "
        "head per aspect + the unified head, trained jointly (proxy.multihead; GPU "
        "recommended). scores: YOUR per-response scores or per-pair gaps "
        "(proxy.scores_path / proxy.score_columns), nothing trained. reward_model: local "
        "off-the-shelf reward model(s) scored as they are (proxy.reward_models / "
        "proxy.reward_outputs), nothing trained.")
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
    max_pairs_per_aspect: Optional[int] = _f(
        None, "Train each aspect's proxy (and the unified margin model) on at most this many of "
        "its train pairs, a seeded uniform sample, so the proxy stage's memory and time stop "
        "growing with the pool; every pair is still scored. null: all pairs (the default).")
    batch_size: int = _f(64, "Encoder batch size for embedding.")
    device: str = _f("cpu", "torch device for encoding / training (cpu, cuda, cuda:1, mps).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "Encoder precision. bfloat16/float16: the forward runs under torch.autocast "
                "(CPU and CUDA), embeddings stay float32; part of the cache key. auto: "
                "bfloat16 on a CPU with AVX-512-BF16/AMX (2.7x faster there, same conflict "
                "AUC, docs/BENCHMARKS.md), float32 elsewhere (GPUs included until measured).")
    cache_dir: str = _f("", "Embedding cache folder (content-hashed; reused across runs). "
                            "Empty: $PDSELECT_CACHE or ~/.cache/pdselect.")
    # scores backend (reward/scores.py): the user's own per-aspect scores, nothing trained
    scores_path: str = _f("", "scores backend: CSV/TSV/JSON/JSONL/Parquet file with your scores "
                              "(empty: data.path, the file the ratings come from). Rows are "
                              "matched to responses by input_id + response_id when the file has "
                              "both columns, else by the input and response texts.")
    score_columns: dict[str, str] = _f({}, "scores backend: aspect -> the column holding its "
                                           "score (higher = better); the key 'unified' maps a "
                                           "holistic score for the margin baseline. Empty: the "
                                           "columns named score_<aspect> or <aspect>_score.")
    score_kind: Literal["auto", "response", "pair"] = _f(
        "auto", "scores backend: response = one score per response (key columns input/prompt + "
                "response, or input_id + response_id); pair = one gap per pair, score(chosen) - "
                "score(rejected) (key columns input/prompt + chosen + rejected); auto: pair when "
                "the file has chosen and rejected columns.")
    # reward_model backend (reward/reward_model.py): off-the-shelf RMs, score only
    reward_models: dict[str, str] = _f({}, "reward_model backend: aspect -> local Hugging Face "
                                           "sequence-classification model folder (one output "
                                           "each). The key 'unified' names a holistic RM for "
                                           "the margin baseline.")
    reward_model: str = _f("", "reward_model backend: ONE local multi-output reward model "
                               "folder whose outputs proxy.reward_outputs maps to aspects.")
    reward_outputs: dict[str, Any] = _f({}, "reward_model backend with proxy.reward_model: "
                                            "aspect -> output index (int) or label name (the "
                                            "model config's id2label); 'unified' likewise.")
    reward_max_length: int = _f(1024, "reward_model backend: tokens per (input, response) "
                                      "text; the input is cut from the left, the response "
                                      "from the right.")
    trust_remote_code: bool = _f(False, "reward_model backend: let transformers run the model "
                                        "folder's own Python code (needed by some multi-"
                                        "objective RMs). Off unless you trust the folder.")
    # multihead backend (reward/multihead.py)
    model_path: str = _f("minilm", "multihead backend: the backbone. 'minilm' (bundled encoder, "
                                   "mean pooling), 'smollm2' (bundled causal LM, last token), "
                                   "or a local Hugging Face model folder.")
    lora: bool = _f(False, "multihead backend: train LoRA adapters (+ the heads) instead of "
                           "all backbone weights.")
    multihead: MultiheadConfig = field(
        default_factory=MultiheadConfig,
        metadata={"help": "multihead backend: training settings (epochs, lr, batches, early "
                          "stopping, LoRA rank)."})


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
                 "paper's w = 1. reliability: w_k = max(0, 2*lo_k - 1), lo_k the lower end of "
                 "the 95% Wilson interval of each proxy's held-out accuracy (no overall label "
                 "needed; near-chance aspects and aspects validated on few pairs count less; "
                 "the weights used are in report.json). user: score.aspect_weights.")
    aspect_weights: dict[str, float] = _f({}, "weighting=user: aspect -> weight >= 0 (aspects "
                                              "not listed get 1).")


@dataclass
class SelectConfig:
    method: Literal["pd", "pd_high", "random", "full", "margin", "pd_rati", "length", "irg",
                    "combine"] = _f(
        "pd", "Selector: pd (most negative PD, the method), pd_high (most positive, ablation), "
              "random, full, margin (largest unified-RM margin, RAF-like), pd_rati (PD from true "
              "ratings: an oracle, needs all aspects rated), length (chosen most longer than "
              "rejected, in characters: the 'longer wins' baseline), irg (smallest DPO "
              "implicit-reward gap, arXiv 2508.04149; needs align.policy), combine (the "
              "intersection or union of select.combine's selectors).")
    budget: float = _f(0.3, "Share of pairs to keep, in (0, 1]. With a threshold rule it is a "
                            "cap: 1.0 keeps every pair that passes the threshold.")
    budget_count: Optional[int] = _f(None, "Keep exactly this many pairs (overrides budget).")
    pd_threshold: Optional[float] = _f(
        None, "Threshold rule for the pd selector (also inside select.combine): keep only pairs "
              "with pd <= this (0: 'no estimated conflict'), at most the budget. null: off.")
    min_margin: Optional[float] = _f(
        None, "Threshold rule for the margin selector (also inside select.combine): keep only "
              "pairs whose unified-model margin is >= this, at most the budget. null: off.")
    combine: dict[str, Any] = _f(
        {}, "select.method=combine: {op: and|or, methods: [two or more selectors]}; each "
            "selector keeps its set under the budget (and its threshold), then the sets are "
            "intersected (and) or joined (or). E.g. {op: and, methods: [pd, margin]}.")
    irg_policy: str = _f(
        "", "select.method=irg: a DPO-trained policy folder (full model or LoRA adapter) whose "
            "implicit reward r = beta*log(pi/pi_ref) ranks the pairs, with align.policy as its "
            "reference. Empty: the select stage first trains one with the align settings on "
            "every pool pair (select/irg/, the paper's 'ALL first' protocol).")
    stratify_by_aspect: bool = _f(False, "Split the budget across aspects in proportion to "
                                         "their pair counts, then select within each.")
    compare: list[str] = _f(["pd", "pd_rati", "margin", "random", "length"],
                            "Selectors compared side by side in the report (length: the "
                            "'longer wins' baseline a selector has to beat).")
    output_format: Literal["parquet", "jsonl"] = _f(
        "parquet", "File format of the TRL-ready dataset, written in select/dpo/ "
                   "(train-00000 and test-00000 .parquet or .jsonl, a README.md dataset card) "
                   "so `load_dataset(<run>/select/dpo)` gives train and test splits.")
    chat_format: Literal["standard", "conversational", "implicit_prompt", "sharegpt"] = _f(
        "standard", "Dataset layout. standard: prompt/chosen/rejected as text. conversational: "
                    "message lists (prompt = user message(s), chosen/rejected = one assistant "
                    "message), exactly what `pdselect align` trains on. implicit_prompt: no "
                    "prompt column, chosen/rejected = the whole conversation (TRL extracts the "
                    "shared prefix). sharegpt: LLaMA-Factory's conversations + chosen + "
                    "rejected with from/value (select/dataset_info.json has its entry).")
    token_check: Literal["auto", "always", "never"] = _f(
        "auto", "Count the exported pairs a trainer would drop (prompt alone >= "
                "align.max_length tokens: TRL 1.16 drops them) or truncate, with align.policy's "
                "tokenizer (select/meta.json, the dataset card). auto: when the tokenizer loads "
                "cheaply (a local folder, or smollm2 already converted); always: an error "
                "if it cannot load (converts smollm2 once); never.")
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


