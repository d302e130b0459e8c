"""reward_model backend: off-the-shelf reward models, scored as they are (nothing trained).

    proxy:
      backend: reward_model
      reward_models: {helpfulness: /models/rm-help, honesty: /models/rm-honest}   # one per aspect
    # or one multi-objective model whose outputs are the aspects:
      reward_model: /models/armo-like
      reward_outputs: {helpfulness: 0, honesty: honesty_label, unified: score}

Each model is a local Hugging Face sequence-classification folder (``num_labels`` outputs).
Text framing: the tokenizer's chat template when it has one (the input as the user turn, the
response as the assistant turn), else the tokenizer's own pair encoding (input, response).
Over-long texts keep the END of the input (the latest turn) and the START of the response,
within ``proxy.reward_max_length`` tokens. Precision: ``proxy.dtype`` (auto: bfloat16 on
CUDA, float32 on CPU). Batches are sorted by length; every output vector is cached on disk by
content (the embedding cache's shards, one namespace per model identity), so a text is scored
once per model across stages, runs and Ray actors. Models are loaded one at a time and released
before the next, so K models never share the device at once.

``proxy.trust_remote_code`` lets transformers run a model folder's own Python code (some
multi-objective RMs need it); it is off unless the user opts in, and logged when on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import StageError

logger = logging.getLogger(__name__)
SPEC_FILE = "reward_model.json"


@dataclass
class Output:
    """One reward: output ``index`` of the model in folder ``path``."""

    name: str
    path: str
    index: int


def _config(path: str, trust: bool):
    from transformers import AutoConfig

    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise StageError(f"{path}: not a local Hugging Face model folder (no config.json). Fix: "
                         "point proxy.reward_model(s) at a folder saved by save_pretrained.")
    return AutoConfig.from_pretrained(str(p), trust_remote_code=trust)


def output_index(key: str, value, cfg_model, path: str) -> int:
    """An output given as an index or as a label name of the model config's id2label."""
    n = int(getattr(cfg_model, "num_labels", 1))
    labels = {str(v): int(k) for k, v in (getattr(cfg_model, "id2label", None) or {}).items()}
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.isdigit()):
        i = int(value)
    elif isinstance(value, str) and value in labels:
        i = labels[value]
    else:
        raise StageError(f"proxy.reward_outputs.{key}={value!r}: not an output index or a label "
                         f"of {path} (labels: {sorted(labels)}, {n} outputs). Fix: use an index "
                         f"0..{n - 1} or one of the labels.")
    if not 0 <= i < n:
        raise StageError(f"proxy.reward_outputs.{key}={value!r}: {path} has {n} outputs "
                         f"(0..{n - 1}). Fix: use an index in that range.")
    return i


def resolve_outputs(cfg, names: list[str]) -> list[Output]:
    """The Output of each name (aspects, or 'unified'), from the config's mapping."""
    trust = bool(cfg.trust_remote_code)
    if cfg.reward_model:
        path = str(Path(cfg.reward_model).expanduser().resolve())
        mc = _config(path, trust)
        missing = [n for n in names if n not in cfg.reward_outputs]
        if missing:
            raise StageError(f"proxy.reward_outputs does not map {missing} (mapped: "
                             f"{sorted(cfg.reward_outputs)}). Fix: add "
                             f"proxy.reward_outputs.{missing[0]}=<index or label>.")
        return [Output(n, path, output_index(n, cfg.reward_outputs[n], mc, path)) for n in names]
    out = []
    for n in names:
        if n not in cfg.reward_models:
            raise StageError(f"proxy.reward_models has no model for aspect {n!r} (mapped: "
                             f"{sorted(cfg.reward_models)}). Fix: add "
                             f"proxy.reward_models.{n}=<model folder>.")
        path = str(Path(cfg.reward_models[n]).expanduser().resolve())
        mc = _config(path, trust)
        if int(getattr(mc, "num_labels", 1)) != 1:
            raise StageError(f"{path} (aspect {n!r}) has {mc.num_labels} outputs. Fix: use "
                             "proxy.reward_model + proxy.reward_outputs to pick outputs of a "
                             "multi-output model.")
        out.append(Output(n, path, 0))
    return out


def check_mapping(cfg, aspects: list[str]) -> None:
    mapped = set(cfg.reward_outputs) if cfg.reward_model else set(cfg.reward_models)
    unknown = sorted(mapped - set(aspects) - {"unified"})
    if unknown:
        key = "reward_outputs" if cfg.reward_model else "reward_models"
        raise StageError(f"proxy.{key} names {unknown}, which are not aspects of this run "
                         f"({aspects}) nor 'unified'. Fix: correct or remove them.")


def model_identity(path: str, dtype: str, max_length: int) -> str:
    """Cache namespace of one model: its folder name + digest of config, tokenizer files and
    weights (sha256 under 64 MiB, else size + mtime), the precision and the length limit."""
    from ..run.fingerprint import _file_entry, input_files

    h = hashlib.sha256()
    for f in input_files(path):
        h.update(json.dumps(_file_entry(f)[1:]).encode())
        h.update(f.name.encode())
    return f"rm-{Path(path).name}-{h.hexdigest()[:12]}-{dtype}-L{int(max_length)}"


def rm_dtype(cfg) -> str:
    """proxy.dtype for a reward model: auto = bfloat16 on CUDA (RMs are trained and served in
    it), float32 on CPU (a reduced-precision CPU GEMM picks its kernel by batch shape, and a
    reward must not depend on its batch mates)."""
    if cfg.dtype != "auto":
        return cfg.dtype
    return "bfloat16" if str(cfg.device).startswith("cuda") else "float32"


# ----------------------------------------------------------------------------- framing
class Framer:
    """(input, response) -> token ids, by the chat template when the tokenizer has one."""

    def __init__(self, tok, max_length: int):
        self.tok, self.max_length = tok, int(max_length)
        self.chat = bool(getattr(tok, "chat_template", None))
        self.overhead = len(self._ids("", ""))

    def _ids(self, inp: str, resp: str) -> list[int]:
        if self.chat:
            msgs = [{"role": "user", "content": inp}, {"role": "assistant", "content": resp}]
            text = self.tok.apply_chat_template(msgs, tokenize=False)
            return self.tok(text, add_special_tokens=False)["input_ids"]
        return self.tok(inp, resp)["input_ids"]

    def _cut(self, inp: str, resp: str) -> tuple[str, str]:
        """Keep the input's end and the response's start within max_length (tokens counted
        on the parts; the template's own tokens are the measured overhead)."""
        tok = self.tok
        xi = tok(inp, add_special_tokens=False)["input_ids"]
        yi = tok(resp, add_special_tokens=False)["input_ids"]
        room = max(self.max_length - self.overhead - 2, 2)
        if len(xi) + len(yi) <= room:
            return inp, resp
        y_keep = min(len(yi), room - min(len(xi), room // 2))
        x_keep = room - y_keep
        return (tok.decode(xi[len(xi) - x_keep:] if x_keep else []), tok.decode(yi[:y_keep]))

    def ids(self, inputs: Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        out = []
        for x, y in zip(inputs, responses):
            ids = self._ids(*self._cut(x, y))
            out.append(ids[: self.max_length])
        return out


# ----------------------------------------------------------------------------- one model
class ModelRunner:
    """One reward-model folder on the device: ``outputs(inputs, responses)`` -> (n, labels)."""

    def __init__(self, path: str, cfg):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        trust = bool(cfg.trust_remote_code)
        if trust:
            logger.warning("proxy.trust_remote_code=true: running the Python code shipped in "
                           "%s", path)
        self.device, self.dtype = cfg.device, rm_dtype(cfg)
        self.tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token or self.tok.unk_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust, dtype=getattr(torch, self.dtype)).to(self.device).eval()
        if self.model.config.pad_token_id is None:  # causal-LM classifiers find the last token
            self.model.config.pad_token_id = self.tok.pad_token_id
        self.framer = Framer(self.tok, cfg.reward_max_length)
        self.batch_size = int(cfg.batch_size)
        self.id = model_identity(path, self.dtype, cfg.reward_max_length)

    def outputs(self, inputs, responses, progress: bool = False) -> np.ndarray:
        import torch

        ids = self.framer.ids(inputs, responses)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(ids), int(self.model.config.num_labels)), dtype=np.float32)
        pad = self.tok.pad_token_id
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                rows = order[s:s + self.batch_size]
                L = max(len(ids[i]) for i in rows)
                x = torch.full((len(rows), L), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), L), dtype=torch.long)
                for j, i in enumerate(rows):
                    x[j, :len(ids[i])] = torch.tensor(ids[i])
                    mask[j, :len(ids[i])] = 1
                logits = self.model(input_ids=x.to(self.device),
                                    attention_mask=mask.to(self.device)).logits
                out[rows] = logits.float().cpu().numpy()
        return out


# ----------------------------------------------------------------------------- scorer
class RewardModelScorer:
    """Rewards of ``outputs`` (one column each) from their models, cached by content."""

    backend = "reward_model"

    def __init__(self, outputs: list[Output], cfg):
        self.outputs_, self.cfg = list(outputs), cfg
        self.n_scored = 0  # texts run through a model (not served by the cache)

    def _model_outputs(self, path: str, inputs, responses, progress: bool) -> np.ndarray:
        from .embed_cache import EmbeddingCache, default_cache_root, text_key

        runner = None
        ident = model_identity(path, rm_dtype(self.cfg), self.cfg.reward_max_length)
        cache = EmbeddingCache(default_cache_root(self.cfg.cache_dir), ident)
        keys = [text_key(ident, "rm", "", x, y) for x, y in zip(inputs, responses)]
        found = cache.get(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        new = {}
        if todo:
            runner = ModelRunner(path, self.cfg)
            vecs = runner.outputs([inputs[i] for i in todo], [responses[i] for i in todo],
                                  progress)
            cache.put([keys[i] for i in todo], vecs)
            new = {keys[i]: v for i, v in zip(todo, vecs)}
            self.n_scored += len(todo)
            del runner  # one model on the device at a time
        return np.stack([found[k] if k in found else new[k] for k in keys]) if keys else \
            np.zeros((0, 1), np.float32)

    def rewards(self, inputs, responses, progress: bool = False) -> np.ndarray:
        inputs, responses = list(inputs), list(responses)
        out = np.zeros((len(inputs), len(self.outputs_)))
        for path in dict.fromkeys(o.path for o in self.outputs_):
            vals = self._model_outputs(path, inputs, responses, progress)
            for c, o in enumerate(self.outputs_):
                if o.path == path:
                    out[:, c] = vals[:, o.index] if len(inputs) else 0.0
        return out

    def save(self, out_dir: Path) -> None:
        (Path(out_dir) / SPEC_FILE).write_text(json.dumps(
            {"outputs": [asdict(o) for o in self.outputs_], "dtype": rm_dtype(self.cfg),
             "max_length": int(self.cfg.reward_max_length)}, indent=2))

    @classmethod
    def load(cls, out_dir: Path, cfg) -> "RewardModelScorer":
        spec = json.loads((Path(out_dir) / SPEC_FILE).read_text())
        outs = [Output(**o) for o in spec["outputs"]]
        for o in outs:
            if not Path(o.path).is_dir():
                raise StageError(f"{out_dir}: reward model {o.path} ({o.name}) is gone. Fix: "
                                 "put it back, or re-run the proxy stage.")
        return cls(outs, cfg)


def reward_model_models(train, aspects: list[str], cfg, seed: int, unified: bool):
    """(aspect models, unified model or None) over off-the-shelf reward models."""
    from .fixed import UNIFIED, char_dlen, score_only_models, unified_scorer

    check_mapping(cfg, aspects)
    scorer = RewardModelScorer(resolve_outputs(cfg, aspects), cfg)
    models = score_only_models(train, aspects, scorer, cfg, seed, char_dlen)
    logger.info("reward_model: %d texts scored, the rest from the cache", scorer.n_scored)
    if not unified:
        return models, None
    mapped = UNIFIED in (cfg.reward_outputs if cfg.reward_model else cfg.reward_models)
    inner = RewardModelScorer(resolve_outputs(cfg, [UNIFIED] if mapped else aspects), cfg)
    u = unified_scorer(inner, mapped, train)
    return models, score_only_models(train.assign(aspect=UNIFIED), [UNIFIED], u, cfg, seed)
