"""The network of the multihead backend: one Hugging Face backbone + N scalar linear heads.

    net = MultiHeadNet.build("minilm", n_heads=6, cfg=proxy_cfg)     # fresh, heads at zero
    R = net.rewards(net.framer.joint_ids(inputs, responses))       # (n, 6) float64
    net.save(folder); net = MultiHeadNet.load(folder, proxy_cfg)

Backbone: 'minilm' (bundled encoder), 'smollm2' (bundled causal LM) or a local folder, loaded
with ``AutoModel`` (a causal-LM checkpoint gives its base model, no LM head). Encoders are
mean-pooled over real tokens; decoders read the last real token's hidden state (right padding),
the one position that has seen the whole text under a causal mask.

Framing: the tokenizer's chat template when it has one (input = user turn, response =
assistant turn), else ``input [SEP] response`` as :class:`.embed.TextFramer` frames it. The
template is rendered ONCE around two sentinels and cut into (prefix, middle, suffix) token ids,
so every text is framed by concatenating ids: truncation (input from the left, response from
the right) stays exact and no text is rendered through Jinja.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import StageError
from .batching import length_batches, pad_batch
from .embed import TextFramer, resolve_encoder_path

logger = logging.getLogger(__name__)
NET_META = "net.json"
HEADS_FILE = "heads.pt"
_SENTINELS = ("\u27e6PDSEL_INPUT\u27e7", "\u27e6PDSEL_RESPONSE\u27e7")


def resolve_backbone(spec: str) -> str:
    """'minilm' / 'smollm2' / a local folder -> a folder ``from_pretrained`` loads."""
    if spec in ("", "minilm"):
        return resolve_encoder_path("minilm")
    if spec.lower() in ("smollm2", "smollm2-135m-instruct"):
        # lazy: only this backbone needs the GGUF conversion that lives with the policy model
        from ..align.policy import ensure_smollm2
        return str(ensure_smollm2())
    p = Path(spec).expanduser()
    if not (p / "config.json").exists():
        raise StageError(f"proxy.model_path={spec!r} is not 'minilm', 'smollm2' nor a local "
                         "model folder with a config.json. Fix: point it at such a folder.")
    return str(p)


def is_decoder(config) -> bool:
    """Causal LM (last-token pooling) or encoder (mean pooling), from the config alone."""
    if getattr(config, "is_encoder_decoder", False):
        raise StageError(f"proxy.model_path: {config.model_type} is an encoder-decoder model. "
                         "Fix: use an encoder (BERT-like) or a decoder-only causal LM.")
    archs = list(getattr(config, "architectures", None) or [])
    if getattr(config, "is_decoder", False) or any(a.endswith(("ForCausalLM", "LMHeadModel"))
                                                   for a in archs):
        return True
    # a bare base model (BertModel, LlamaModel): decoder when its type has a causal LM but
    # no masked LM (bert, roberta have both and are encoders)
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    return (config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def chat_segments(tok) -> tuple[list[int], list[int], list[int]] | None:
    """(prefix, middle, suffix) ids of the chat template around one user + one assistant
    turn, or None when the tokenizer has no usable template."""
    if not getattr(tok, "chat_template", None):
        return None
    a, b = _SENTINELS
    try:
        s = tok.apply_chat_template([{"role": "user", "content": a},
                                     {"role": "assistant", "content": b}], tokenize=False)
    except Exception as e:  # noqa: BLE001 - any template error means: frame plainly
        logger.warning("chat template failed (%s); framing 'input [SEP] response'", e)
        return None
    if s.count(a) != 1 or s.count(b) != 1 or s.index(a) > s.index(b):
        logger.warning("chat template does not keep the turns verbatim; plain framing")
        return None
    pre, rest = s.split(a)
    mid, suf = rest.split(b)

    def enc(t: str) -> list[int]:
        return tok(t, add_special_tokens=False)["input_ids"] if t else []

    return enc(pre), enc(mid), enc(suf)


def make_framer(tok, max_in: int, max_resp: int, max_positions: int,
                framing: str | None = None) -> TextFramer:
    """TextFramer whose (pre, sep, suf) are the chat template's segments when it has one;
    lengths shrunk to fit the model's positions. ``framing`` forces one ('chat'/'plain')."""
    fr = TextFramer(tok, max_in, max_resp)
    segs = chat_segments(tok) if framing in (None, "chat") else None
    if framing == "chat" and segs is None:
        raise StageError("saved proxy was framed with a chat template the tokenizer no longer "
                         "renders. Fix: re-run the proxy stage.")
    if segs is not None:
        fr.pre, fr.sep, fr.suf = segs
    fr.framing = "chat" if segs is not None else "plain"
    room = max_positions - len(fr.pre) - len(fr.sep) - len(fr.suf)
    fr.max_resp = min(fr.max_resp, max(room, 1))
    if fr.max_in + fr.max_resp > room:
        fr.max_in = max(room - fr.max_resp, 0)
        logger.warning("proxy input truncated to %d tokens to fit %d positions", fr.max_in,
                       max_positions)
    return fr


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:  # pad value is never attended to; any id does
        tok.pad_token = tok.eos_token or tok.sep_token or tok.unk_token
    return tok


def autocast(device: str):
    """bf16 autocast on CUDA (the heads still run in float32); exact float32 elsewhere."""
    if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class MultiHeadNet(nn.Module):
    """backbone -> pooled (b, d) float32 -> heads (b, H). No head bias: it cancels in gaps."""

    def __init__(self, backbone, tok, framer: TextFramer, n_heads: int, decoder: bool,
                 info: dict):
        super().__init__()
        self.backbone, self.tok, self.framer, self.decoder = backbone, tok, framer, decoder
        self.info = dict(info)  # backbone spec/path/id, lora: what save/load needs
        self.heads = nn.Linear(backbone.config.hidden_size, n_heads, bias=False)
        nn.init.zeros_(self.heads.weight)  # first steps move the heads, not a random direction
        self._memo: tuple[bytes, np.ndarray] | None = None

    @classmethod
    def build(cls, spec: str, n_heads: int, cfg, seed: int = 0) -> "MultiHeadNet":
        from transformers import AutoModel

        path = resolve_backbone(spec)
        torch.manual_seed(int(seed))
        backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
        tok = load_tokenizer(path)
        dec = is_decoder(backbone.config)
        info = {"backbone": spec or "minilm", "base_path": path, "lora": bool(cfg.lora),
                "backbone_id": backbone_id(path)}
        if cfg.lora:
            from peft import LoraConfig, get_peft_model

            mh = cfg.multihead
            backbone = get_peft_model(backbone, LoraConfig(
                r=mh.lora_r, lora_alpha=mh.lora_alpha, lora_dropout=0.0,
                target_modules="all-linear"))
        framer = make_framer(tok, cfg.max_input_tokens, cfg.max_response_tokens,
                             max_positions(backbone.config))
        return cls(backbone, tok, framer, n_heads, dec, info)

    @property
    def device(self) -> torch.device:
        return self.heads.weight.device

    def forward(self, inp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, H) float32 rewards of one right-padded batch already on the device."""
        with autocast(str(self.device)):
            h = self.backbone(input_ids=inp, attention_mask=mask).last_hidden_state
        h = h.float()
        if self.decoder:
            pooled = h[torch.arange(len(h), device=h.device), mask.sum(1) - 1]
        else:
            m = mask.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled @ self.heads.weight.T

    @torch.no_grad()
    def rewards(self, ids: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
        """(n, H) rewards in eval mode, length-sorted batches. The last call is memoised: the
        aspect and unified scorers of one net ask for the same texts in a row."""
        key = _ids_key(ids)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        was = self.training
        self.eval()
        out = np.zeros((len(ids), self.heads.out_features), dtype=np.float64)
        lengths = [len(x) for x in ids]
        for idx in length_batches(lengths, batch_size) if len(ids) else []:
            inp, mask = pad_batch(ids, idx, self.tok.pad_token_id)
            out[idx] = self(inp.to(self.device), mask.to(self.device)).double().cpu().numpy()
        self.train(was)
        self._memo = (key, out)
        return out

    def trainable(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters that train, head parameters)."""
        return [p for p in self.backbone.parameters() if p.requires_grad], [self.heads.weight]

    def save(self, folder: Path) -> None:
        """Backbone (full weights, or the LoRA adapter) + tokenizer + heads + net.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(str(folder / "backbone"))
        self.tok.save_pretrained(str(folder / "backbone"))
        torch.save(self.heads.weight.detach().cpu(), folder / HEADS_FILE)
        meta = {**self.info, "decoder": self.decoder, "framing": self.framer.framing,
                "n_heads": self.heads.out_features, "max_input_tokens": self.framer.max_in,
                "max_response_tokens": self.framer.max_resp}
        (folder / NET_META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "MultiHeadNet":
        from transformers import AutoModel

        folder = Path(folder)
        meta = json.loads((folder / NET_META).read_text())
        src = folder / "backbone"
        if meta["lora"]:
            from peft import PeftModel

            base_path = resolve_backbone(meta["backbone"])
            if backbone_id(base_path) != meta["backbone_id"]:
                raise StageError(f"{folder}: the LoRA adapter was trained on backbone "
                                 f"{meta['backbone_id']} but {meta['backbone']!r} now resolves "
                                 f"to {backbone_id(base_path)}. Fix: restore that backbone, "
                                 "or re-run the proxy stage.")
            base = AutoModel.from_pretrained(base_path, dtype=torch.float32)
            backbone = PeftModel.from_pretrained(base, str(src))
        else:
            backbone = AutoModel.from_pretrained(str(src), dtype=torch.float32)
        tok = load_tokenizer(str(src))
        framer = make_framer(tok, meta["max_input_tokens"], meta["max_response_tokens"],
                             max_positions(backbone.config), meta["framing"])
        net = cls(backbone, tok, framer, meta["n_heads"], meta["decoder"], meta)
        net.heads.weight.data.copy_(torch.load(folder / HEADS_FILE, weights_only=True))
        return net.to(device).eval()


def max_positions(config) -> int:
    return int(getattr(config, "max_position_embeddings", None) or 512)


def backbone_id(path: str) -> str:
    """config.json + weight file sizes: a changed base model is caught before scoring."""
    h = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin"):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _ids_key(ids: Sequence[Sequence[int]]) -> bytes:
    """Content hash of a list of token-id lists (lengths + every id)."""
    h = hashlib.sha256(np.array([len(x) for x in ids], dtype=np.int64).tobytes())
    h.update(np.fromiter((t for x in ids for t in x), dtype=np.int64).tobytes())
    return h.digest()
