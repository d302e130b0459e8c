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
    """(tokenizer of align.policy, None) or (None, why not) for the token-length check.

    select.token_check: never -> skipped; always -> loaded (smollm2 converted if it is not yet), a
    failure is an error; auto -> loaded when that is cheap: a local folder, a hub id that
    loads, or smollm2 already converted in the cache (converting it takes a minute, which a
    selection should not pay unasked); otherwise skipped with the reason."""
    mode = getattr(cfg.select, "token_check", "auto")
    if mode == "never" or not cfg.align.policy:
        return None, ("select.token_check=never" if mode == "never" else "align.policy is empty")
    from .policy import SMOLLM2_NAME, cache_root, resolve_policy

    if (mode == "auto" and cfg.align.policy.lower() in ("smollm2", SMOLLM2_NAME)
            and not (cache_root() / "models" / SMOLLM2_NAME / "config.json").exists()):
        return None, ("smollm2 is not converted yet (pdselect align converts it once); "
                      "select.token_check=always converts it here")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(resolve_policy(cfg.align.policy)), None
    except Exception as e:  # noqa: BLE001 - in auto mode any load failure only skips the check
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if mode == "always":
            raise ConfigError("align.policy", f"{cfg.align.policy!r}: its tokenizer did not "
                              f"load ({first}) and select.token_check=always.", "give a local "
                              "model folder, or select.token_check=auto to skip.") from e
        log.warning("select    token-length check skipped: align.policy=%r did not load (%s)",
                    cfg.align.policy, first)
        return None, f"align.policy={cfg.align.policy!r} did not load ({first})"
