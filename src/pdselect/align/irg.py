"""The select stage's uses of the policy (select runs before align, so these live here):

    gaps = irg_gaps(cfg, pairs, pool, out / "irg")   # select.method=irg
    tok, why_not = policy_tokenizer(cfg)              # the hand-off's token-length check

IRG is the implicit-reward-gap selection of arXiv 2508.04149, as the experiment grid runs it
(experiments/dpo_level.py): a DPO policy trained on every pool pair scores each pair's
r(x, y_w) - r(x, y_l) = beta * [log pi/pi_ref (y_w) - log pi/pi_ref (y_l)] against the starting
policy, and the pairs with the SMALLEST gaps (the hardest for it) are kept.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..run.artifacts import write_parquet

log = logging.getLogger(__name__)


def irg_gaps(cfg, pairs: pd.DataFrame, pool: pd.DataFrame, out: Path) -> np.ndarray:
    """Gap per row of ``pool`` (``pairs``: pair_id, input, chosen, rejected). The scoring
    policy is ``select.irg_policy`` when set, else one trained here with the align settings
    on every pool pair (saved under ``out``); its reference is ``align.policy`` (a LoRA
    adapter's own base with the adapters disabled)."""
    from .dpo import align
    from .implicit_reward import implicit_reward_gaps
    from .policy import resolve_policy

    p = pairs.set_index("pair_id").loc[pool["pair_id"]]
    frame = pd.DataFrame({"prompt": p["input"].to_numpy(), "chosen": p["chosen"].to_numpy(),
                          "rejected": p["rejected"].to_numpy()})
    try:
        policy = cfg.select.irg_policy
        if not policy:
            write_parquet(Path(out) / "all.parquet", frame)
            policy = align(Path(out) / "all.parquet", dataclasses.replace(cfg.align, loss="dpo"),
                           Path(out), cfg.seed)["model_dir"]
        lora = (Path(policy) / "adapter_config.json").exists()
        ref = None if lora else resolve_policy(cfg.align.policy)
        gaps = implicit_reward_gaps(policy, ref, frame, cfg.align.beta, cfg.align.max_length)
    except OSError as e:  # transformers' "not a folder / not on the hub (offline)"
        raise ConfigError("select.method", f"irg could not load align.policy="
                          f"{cfg.align.policy!r} / select.irg_policy={cfg.select.irg_policy!r}: "
                          f"{str(e).splitlines()[0]}", "give a local model folder (or smollm2), "
                          "or choose another selector.") from e
    return gaps.to_numpy(np.float64)


def policy_tokenizer(cfg):
    """(tokenizer of align.policy, None) or (None, why not): the token-length check is skipped,
    not fatal, when no policy is configured or it does not load here (e.g. a hub id offline)."""
    if not cfg.align.policy:
        return None, "align.policy is empty"
    try:
        from transformers import AutoTokenizer

        from .policy import resolve_policy

        return AutoTokenizer.from_pretrained(resolve_policy(cfg.align.policy)), None
    except Exception as e:  # noqa: BLE001 - any load failure only skips the check
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        log.warning("select    token-length check skipped: align.policy=%r did not load (%s)",
                    cfg.align.policy, first)
        return None, f"align.policy={cfg.align.policy!r} did not load ({first})"
