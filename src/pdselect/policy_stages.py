"""The policy stages after selection: ``align`` (DPO / DFPO through TRL) and ``eval``.

Both are opt-in (``pdselect align``, ``pdselect eval``): the default ``run`` stops at the report,
since DPO on CPU takes minutes to hours. Held-out evaluation pairs are the TEST split (inputs
never seen in selection or training), labelled by the hidden overall preference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .run.artifacts import RunDir, read_json, write_json, write_parquet
from .config import RunConfig
from .errors import StageError
from .data.schema import public_view

log = logging.getLogger(__name__)


def _pairs(run: RunDir, split: str) -> pd.DataFrame:
    pairs = pd.read_parquet(run.root / "aggregate" / "pairs.parquet")
    return pairs[pairs["split"] == split].reset_index(drop=True)


def eval_pairs(run: RunDir) -> pd.DataFrame | None:
    """Held-out pairs as prompt/chosen/rejected + the overall label (None without one)."""
    test = _pairs(run, "test")
    if "h_agrees_overall" not in test.columns or test["h_agrees_overall"].isna().all():
        return None
    return pd.DataFrame({"prompt": test["input"], "chosen": test["chosen"],
                         "rejected": test["rejected"],
                         "h_agrees_overall": test["h_agrees_overall"],
                         "h_overall_delta": test["h_overall_delta"]})


def selected_dataset(run: RunDir) -> Path:
    """The select stage's TRL dataset folder (``select/dpo/``, one data file)."""
    folder = run.root / "select" / "dpo"
    if folder.is_dir() and any(folder.glob("train-*")):
        return folder
    raise StageError(f"{folder} holds no dataset. Fix: run the select stage first "
                     "(pdselect run).")


def stage_align(cfg: RunConfig, run: RunDir) -> dict:
    from .align.dpo import align

    aspects = read_json(run.root / "aggregate" / "meta.json")["aspects"]
    out = run.stage("align")
    if cfg.align.loss == "dfpo":
        # DFPO trains on the FULL train set, each pair carrying its estimated PD
        train = public_view(_pairs(run, "train"))
        scores = pd.read_parquet(run.root / "score" / "scores.parquet")[["pair_id", "pd"]]
        full = train.merge(scores, on="pair_id", validate="1:1")
        dataset = out / "dfpo_input.parquet"
        write_parquet(dataset, pd.DataFrame({"prompt": full["input"], "chosen": full["chosen"],
                                             "rejected": full["rejected"], "pd": full["pd"]}))
    else:
        dataset = selected_dataset(run)
    metrics = align(dataset, cfg.align, out, cfg.seed, eval_pairs=eval_pairs(run), K=len(aspects))
    summary = {"loss": cfg.align.loss, "steps": metrics["steps"],
               "train_loss": metrics["train_loss"], "model_dir": metrics["model_dir"]}
    if "eval" in metrics:
        summary["heldout_implicit_reward_accuracy"] = metrics["eval"]["accuracy"]
    return summary


def _features_fn(cfg: RunConfig):
    from .reward.frozen import features, make_store

    store = make_store(cfg.proxy)
    return lambda inputs, responses: features(store, cfg.proxy.features, inputs, responses)


def _probe_part(cfg: RunConfig, run: RunDir, test: pd.DataFrame, feats) -> dict:
    """Probe trained on the selection vs on every train pair, in one batched fit per L2."""
    from .select.dpo_data import read_pairs
    from .experiments.probe import probe_many

    sel = read_pairs(selected_dataset(run)).rename(columns={"prompt": "input"})
    full = public_view(_pairs(run, "train"))
    acc = probe_many(feats, full, {"selection": sel, "all_train_pairs": full},
                     test.rename(columns={"prompt": "input"}), cfg.eval.probe_l2, cfg.seed)
    return {**acc, "n_selection": len(sel), "n_all": len(full)}


def _generation_part(cfg: RunConfig, run: RunDir, feats) -> dict:
    """Judge the aligned policy's generations vs the starting model's on held-out inputs."""
    from .experiments.judge import RidgeJudge, generate, rating_target
    from .align.policy import load_policy

    meta = read_json(run.root / "ingest" / "meta.json")
    if meta["kind"] != "rated":
        return {"skipped": "no ratings to train an oracle judge (paired input)"}
    rated = pd.read_parquet(run.root / "ingest" / "rated.parquet")
    test_inputs = set(_pairs(run, "test")["input_id"])
    train_rows = rated[~rated["input_id"].isin(test_inputs)]
    y = rating_target(train_rows, meta["aspects"], {a: tuple(v) for a, v in meta["scales"].items()})
    judge = RidgeJudge(alpha=1.0).fit(feats(list(train_rows["input"]),
                                            list(train_rows["response"])), y)
    prompts = (rated[rated["input_id"].isin(test_inputs)].drop_duplicates("input_id")["input"]
               .tolist()[: cfg.eval.n_generate])
    res = {"n_prompts": len(prompts), "judge_train_responses": int(len(train_rows))}
    from peft import AutoPeftModelForCausalLM

    model_dir = run.root / "align" / "model"
    for name in ("start", "aligned"):
        if name == "start":
            model, tok = load_policy(cfg.align.policy)
        else:
            if (model_dir / "adapter_config.json").exists():
                model = AutoPeftModelForCausalLM.from_pretrained(str(model_dir))
            else:
                from transformers import AutoModelForCausalLM

                model = AutoModelForCausalLM.from_pretrained(str(model_dir))
        gens = generate(model, tok, prompts, cfg.eval.max_new_tokens)
        score = judge.predict(feats(prompts, gens))
        res[name] = {"judge_mean": float(np.mean(score)),
                     "mean_chars": float(np.mean([len(g) for g in gens])),
                     "examples": gens[:3]}
    res["judge_gain"] = res["aligned"]["judge_mean"] - res["start"]["judge_mean"]
    return res


def stage_eval(cfg: RunConfig, run: RunDir) -> dict:
    test = eval_pairs(run)
    if test is None:
        raise StageError("evaluation needs held-out pairs with an overall preference; this data "
                         "has none (or aggregate.test_fraction=0).")
    feats = _features_fn(cfg)
    out = run.stage("eval")
    result = {"n_heldout_pairs": int(test["h_agrees_overall"].notna().sum()),
              "probe": _probe_part(cfg, run, test, feats)}
    align_metrics = run.root / "align" / "metrics.json"
    if run.is_done("align") and align_metrics.exists():
        am = read_json(align_metrics)
        result["policy"] = {"implicit_reward": am.get("eval"), "loss": am["loss_type"],
                            "steps": am["steps"]}
        if cfg.eval.n_generate > 0:
            result["policy"]["generations"] = _generation_part(cfg, run, feats)
    write_json(out / "metrics.json", result)
    summary = {f"probe_selection_l2={k:g}": v for k, v in result["probe"]["selection"].items()}
    summary.update({f"probe_all_l2={k:g}": v for k, v in result["probe"]["all_train_pairs"].items()})
    if "policy" in result and result["policy"]["implicit_reward"]:
        summary["implicit_reward_accuracy"] = result["policy"]["implicit_reward"]["accuracy"]
    return summary
