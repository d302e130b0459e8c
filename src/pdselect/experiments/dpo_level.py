"""The DPO policy level of the experiment grid: train the policy on each method's pairs with
TRL (align/dpo.py), then measure the DPO implicit-reward accuracy on HELD-OUT pairs labelled by the
overall preference (align/implicit_reward.py), plain and length-controlled (accuracy within the
strata "overall winner is the longer / the shorter response", their mean, a logistic length
adjustment), with the rule "the longer response wins" as the baseline row LONGER.

Also the implicit-reward-gap selection of arXiv 2508.04149 (method ``IRG``): the policy trained
on ALL scores every train pair's implicit reward gap r(x, y_w) - r(x, y_l) against its
reference, and the pairs with the SMALLEST gaps (those the aligned model finds hardest) are kept
at the budget and trained from the same start. It therefore needs ``ALL`` earlier in
``experiment.dpo_methods``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..run.artifacts import write_parquet
from ..config import RunConfig

log = logging.getLogger(__name__)
DPO_BUDGET = 0.3


def _trl_frame(sub: pd.DataFrame, offset: np.ndarray | None) -> pd.DataFrame:
    df = pd.DataFrame({"prompt": sub["input"].to_numpy(), "chosen": sub["chosen"].to_numpy(),
                       "rejected": sub["rejected"].to_numpy()})
    if offset is not None:
        df["pd"] = offset
    return df


def _eval_frame(test: pd.DataFrame, n_max: int, seed: int) -> pd.DataFrame:
    """Held-out pairs with an overall preference; a seeded sample of ``n_max`` when > 0."""
    test = test[test["h_agrees_overall"].notna()]
    if 0 < n_max < len(test):
        test = test.sample(n=n_max, random_state=seed).sort_index()
    return pd.DataFrame({"prompt": test["input"], "chosen": test["chosen"],
                         "rejected": test["rejected"],
                         "h_agrees_overall": test["h_agrees_overall"],
                         "len_chosen": test["len_chosen"], "len_rejected": test["len_rejected"]})


def _oriented(evalp: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The eval pairs with ``chosen`` = the OVERALL winner, and the length (characters) of the
    winner minus the other's: the covariate of the length-controlled metrics."""
    flip = evalp["h_agrees_overall"].to_numpy(np.float64) == 0
    c, r = evalp["chosen"].to_numpy(), evalp["rejected"].to_numpy()
    out = pd.DataFrame({"prompt": evalp["prompt"].to_numpy(), "chosen": np.where(flip, r, c),
                        "rejected": np.where(flip, c, r)})
    gap = evalp["len_chosen"].to_numpy(np.float64) - evalp["len_rejected"].to_numpy(np.float64)
    return out, np.where(flip, -gap, gap)


def _eval_columns(correct: np.ndarray, len_gap: np.ndarray) -> dict:
    """dpo_implicit_acc (a reward tie counts as wrong, as align's own evaluation) and its
    length-controlled companions (probe.length_columns)."""
    from .probe import length_columns

    return {"dpo_implicit_acc": float(correct.mean()) if len(correct) else float("nan"),
            **length_columns("dpo", correct, len_gap)}


def _policy_correct(cfg: RunConfig, m: dict, oriented: pd.DataFrame) -> np.ndarray:
    """1/0 per held-out pair: does the trained policy's implicit reward prefer the overall
    winner (the same pass as align's evaluation, kept per pair)."""
    from ..align.implicit_reward import pair_rewards

    ref = None if cfg.align.lora else m["policy"]  # LoRA: the base with adapters disabled
    gaps = pair_rewards(m["model_dir"], ref, oriented, cfg.align.beta, cfg.align.max_length)
    return (gaps["gap"].to_numpy() > 0).astype(np.float64)


def dpo_metrics(cfg: RunConfig, cell, base: dict, out_root: Path) -> list[dict]:
    """One row per DPO-trained method: held-out implicit-reward accuracy and cost."""
    from ..align.dpo import align
    from .methods import SUBSET_METHODS, method_pairs
    from ..align.implicit_reward import implicit_reward_gaps

    rows, models = [], {}
    cell_dir = Path(out_root) / f"{base['dataset']}_{base['conflict']}_seed{base['seed']}"
    evalp = _eval_frame(cell.test, cfg.experiment.dpo_eval_pairs, cell.seed)
    oriented, len_gap = _oriented(evalp)
    from .probe import LENGTH_RULE, length_rule_correct

    rows.append({**base, "method": LENGTH_RULE, "budget": 1.0, "n": 0,
                 **_eval_columns(length_rule_correct(len_gap), len_gap)})
    for name in cfg.experiment.dpo_methods:
        budget = DPO_BUDGET if name in SUBSET_METHODS or name == "IRG" else 1.0
        if name == "IRG":
            if "ALL" not in models:
                log.warning("IRG needs ALL earlier in experiment.dpo_methods; skipped")
                continue
            gaps = implicit_reward_gaps(models["ALL"], None if cfg.align.lora else
                                        cfg.align.policy, _trl_frame(cell.train, None),
                                        cfg.align.beta, cfg.align.max_length).to_numpy()
            order = pd.DataFrame({"g": gaps, "pid": cell.train["pair_id"]}).sort_values(
                ["g", "pid"], kind="mergesort").index.to_numpy()
            keep = order[: int(np.ceil(DPO_BUDGET * len(order) - 1e-9))]
            sub, offset = cell.train.iloc[np.sort(keep)], None
        else:
            sub, offset, _ = method_pairs(name, budget, cell)
        run_dir = cell_dir / name
        data = run_dir / "train.parquet"
        write_parquet(data, _trl_frame(sub, offset))
        acfg = dataclasses.replace(cfg.align, loss="dfpo" if name == "DFPO" else "dpo")
        m = align(data, acfg, run_dir, cell.seed, K=len(cell.aspects))
        models[name] = m["model_dir"]
        ev = _eval_columns(_policy_correct(cfg, m, oriented), len_gap)
        rows.append({**base, "method": name, "budget": budget, "n": len(sub), **ev,
                     "dpo_steps": m["steps"], "dpo_train_s": m["train_runtime_s"]})
        log.info("DPO %s %s: held-out implicit-reward accuracy %.3f, length-balanced %.3f "
                 "(%d steps, %.0fs)", base["dataset"], name, ev["dpo_implicit_acc"],
                 ev["dpo_balanced"], m["steps"], m["train_runtime_s"])
    return rows
