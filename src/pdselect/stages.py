"""The stages of the pipeline, one function each, and what each stage's result depends on.
Stages talk only through files in the run directory; pipeline.py drives them (skip finished,
invalidate stale, claim the run dir).

    ingest -> aggregate -> proxy -> score -> select -> report   (align, eval: opt-in)

``config_fingerprint(cfg, stage)`` is the hash a finished stage's marker records: the config
sections it (and every stage before it) reads, the content of the input data, the files a
reward source reads, and the policy settings select's token check reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pandas as pd

from .run.artifacts import RunDir, read_json, write_json, write_parquet, write_text
from .config import RunConfig
from .errors import StageError
from .data.rejects import RejectLog
from .data.schema import public_view
from .run.stage_tables import load_score_pool, train_pairs

log = logging.getLogger("pdselect.pipeline")  # the stages log under the driver's name, as before
STAGES = ["ingest", "aggregate", "proxy", "score", "select", "report"]


# ----------------------------------------------------------------------------- stages
def stage_ingest(cfg: RunConfig, run: RunDir) -> dict:
    from .data import PairsInput, read_source

    rejects = RejectLog("ingest")
    out = run.stage("ingest")
    # the readers stream rated.parquet in row groups: the texts are never all in memory
    got = read_source(cfg.data, rejects, spill_to=out / "rated.parquet")
    rejects.write(out / "rejects.jsonl")
    if isinstance(got, PairsInput):
        write_parquet(out / "pairs_input.parquet", got.df)
        meta = {"kind": "pairs", "aspects": list(got.aspects), "source": got.source,
                "n_pairs": len(got.df)}
    else:
        if got.path is None:  # a reader that kept its texts (helpsteer2)
            write_parquet(out / "rated.parquet", got.df)
        meta = {"kind": "rated", "aspects": list(got.aspects), "source": got.source,
                "scales": {a: list(v) for a, v in got.scales.items()},
                "has_overall": got.has_overall, "n_responses": len(got.df),
                "n_inputs": int(got.df["input_id"].nunique())}
    meta["rejects"] = rejects.counts()
    from .run.fingerprint import input_fingerprint

    meta["input"] = input_fingerprint(cfg.data)
    write_json(out / "meta.json", meta)
    return meta


def stage_aggregate(cfg: RunConfig, run: RunDir) -> dict:
    from .aggregate.pairs import from_pairs_input
    from .aggregate.stream import plan_rated
    from .validate import check_pairs

    meta = read_json(run.root / "ingest" / "meta.json")
    rejects = RejectLog("aggregate")
    out = run.stage("aggregate")
    plan = None
    if meta["kind"] == "pairs":
        src = pd.read_parquet(run.root / "ingest" / "pairs_input.parquet")
        pairs = from_pairs_input(src, cfg.aggregate, cfg.seed, rejects)
    else:  # in chunks of whole inputs, texts never all in memory (aggregate/stream.py)
        plan = plan_rated(run.root / "ingest" / "rated.parquet", meta, cfg.aggregate, cfg.seed,
                          rejects, out / "_parts")
        pairs = plan.light
    train = pairs[pairs["split"] == "train"]
    aspects = [a for a in meta["aspects"] if (train["aspect"] == a).any()]
    check_pairs(cfg, pairs, aspects)  # the checks `pdselect validate` makes, before any compute
    if plan is None:
        write_parquet(out / "pairs.parquet", pairs)
    else:
        plan.write(out / "pairs.parquet")
    rejects.write(out / "rejects.jsonl")
    summary = {"n_pairs": len(pairs), "n_train": len(train), "n_test": len(pairs) - len(train),
               "aspects": aspects, "pairs_per_aspect": train["aspect"].value_counts().to_dict(),
               "rejects": rejects.counts()}
    from .aggregate.pairs import holdout_rule

    summary["holdout"] = holdout_rule(cfg.aggregate, bool(meta.get("has_overall")),
                                      meta["source"])[1]
    if "h_agrees_overall" in pairs.columns:
        from .report.evaluate import conflict_rate

        summary["train_conflict_rate"] = conflict_rate(train["h_agrees_overall"].to_numpy())
    write_json(out / "meta.json", summary)
    return summary


def stage_proxy(cfg: RunConfig, run: RunDir, progress: bool = False) -> dict:
    from .reward import UNIFIED, train_proxy_models
    from .reward.score_only import SCORE_ONLY, build_score_only

    aspects = read_json(run.root / "aggregate" / "meta.json")["aspects"]
    cap = cfg.proxy.max_pairs_per_aspect
    if cap is None:
        train = public_view(train_pairs(run))
    else:  # only the sample's texts are read (proxy.max_pairs_per_aspect)
        from .reward.base import read_train_sample

        train = read_train_sample(run.root / "aggregate" / "pairs.parquet", cap, cfg.seed)
    out = run.stage("proxy")
    floor = cfg.aggregate.min_pairs_per_aspect  # the one floor: aggregate checked the same
    if cfg.proxy.backend in SCORE_ONLY:  # rewards as given: nothing trained
        rated = run.root / "ingest" / "rated.parquet"
        metrics = build_score_only(train, aspects, cfg.proxy, cfg.seed, out, cfg.data.path,
                                   rated if rated.exists() else None, cfg.score.margin_model)
        write_json(out / "metrics.json", metrics)
        return {"val_accuracy": {a: m.get("val_accuracy") for a, m in metrics["aspects"].items()}}
    if cfg.proxy.backend == "multihead" and cfg.score.margin_model:
        # ONE network: the unified head trains with the aspect heads (reward/multihead.py)
        from .reward.multihead import save_joint, train_joint_models

        models, unified = train_joint_models(train, aspects, cfg.proxy, cfg.seed, progress,
                                             min_pairs=floor)
        save_joint(models, unified, out)
        metrics = {"aspects": models.metrics, "unified": unified.metrics}
        if cap is not None:
            metrics["sample"] = {"max_pairs_per_aspect": cap, "n_train_pairs_used": len(train)}
        write_json(out / "metrics.json", metrics)
        return {"val_accuracy": {a: m.get("val_accuracy") for a, m in models.metrics.items()}}
    models = train_proxy_models(train, aspects, cfg.proxy, cfg.seed, out / "aspects", progress,
                                min_pairs=floor)
    models.save(out / "aspects")
    metrics = {"aspects": models.metrics}
    if cap is not None:
        metrics["sample"] = {"max_pairs_per_aspect": cap, "n_train_pairs_used": len(train)}
    if cfg.score.margin_model:
        # reward.train_unified_model with the configured floor (it has no min_pairs argument)
        unified = train_proxy_models(train.assign(aspect=UNIFIED), [UNIFIED], cfg.proxy,
                                     cfg.seed, out / "unified", min_pairs=floor)
        unified.save(out / "unified")
        metrics["unified"] = unified.metrics
    write_json(out / "metrics.json", metrics)
    return {"val_accuracy": {a: m.get("val_accuracy") for a, m in models.metrics.items()}}


def stage_score(cfg: RunConfig, run: RunDir) -> dict:
    from .data.schema import delta_col
    from .score.table import pd_rati_table

    aspects = read_json(run.root / "aggregate" / "meta.json")["aspects"]
    # PD-rati needs the true gaps only: no texts are read (1M pairs' texts are gigabytes)
    pairs = train_pairs(run, ["pair_id", "aspect", *map(delta_col, aspects)])
    out = run.stage("score")
    # one engine: small data is the one-shard case of the streamed engine (local or Ray)
    table, summary = _score_sharded(cfg, run, aspects, out)
    write_parquet(out / "scores.parquet", table)
    rati = pd_rati_table(pairs, aspects, cfg.score.gamma)
    if rati is not None:
        write_parquet(out / "pd_rati.parquet", rati)
    summary.update({"n_scored": len(table), "pd_mean": float(table["pd"].mean()),
                    "pd_rati": rati is not None})
    write_json(out / "meta.json", summary)
    return summary


def _pd_weights(cfg: RunConfig, run: RunDir, aspects: list[str]):
    """score.weighting's aspect weights, from the proxy stage's held-out accuracies."""
    from .score.table import pd_weights

    metrics = read_json(run.root / "proxy" / "metrics.json").get("aspects", {})
    return pd_weights(cfg.score, aspects, metrics)


def _score_sharded(cfg: RunConfig, run: RunDir, aspects: list[str], out: Path):
    """Streamed, resumable scoring in shards of ``score.shard_size`` pairs (local or Ray; one
    shard when the pool is smaller). Its parts live in ``score/sharded`` and are concatenated
    into the usual score table."""
    from .score.engine import read_scores, score_stage

    from .run.artifacts import remove_tree

    stamp = out / "sharded" / "_config"
    fp = config_fingerprint(cfg, "score")
    if stamp.exists() and stamp.read_text() != fp and run.owned:
        remove_tree(out / "sharded")  # shards of another config/input: never resumed
    write_text(stamp, fp)
    unified = run.root / "proxy" / "unified"
    summary = score_stage(run.root / "aggregate" / "pairs.parquet", run.root / "proxy" / "aspects",
                          aspects, cfg, out / "sharded",
                          margin_models=unified if unified.exists() else None,
                          weights=_pd_weights(cfg, run, aspects))
    return read_scores(out / "sharded"), summary


def stage_select(cfg: RunConfig, run: RunDir) -> dict:
    from .select.export import length_stats, pd_cutoff
    from .select.rank_buckets import write_select_outputs
    from .select.selectors import rule_members, rule_selector, selection_table
    from .validate import check_budget

    s = cfg.select
    pool = load_score_pool(run)
    check_budget(cfg, len(pool))
    out = run.stage("select")
    if "irg" in rule_members(s):  # a DPO policy's implicit-reward gap per pool pair
        from .align.irg import irg_gaps

        pool["irg_gap"] = irg_gaps(cfg, train_pairs(run, ["pair_id", "input", "chosen",
                                                          "rejected"]), pool, out / "irg")
    sel = rule_selector(s, cfg.seed).fit(pool)
    if sel.n_select_ == 0:  # only a threshold or an 'and' can get here: the budget keeps >= 1
        raise StageError(f"select: the rule kept no pair of {len(pool)} (method={s.method}, "
                         f"pd_threshold={s.pd_threshold}, min_margin={s.min_margin}, "
                         f"combine={s.combine or None}). Fix: loosen the threshold (see the pd / "
                         "margin columns of score/scores.parquet) or use op: or.")
    table = selection_table(pool, sel, s.method)
    write_parquet(out / "selection.parquet", table)
    # inspect.parquet and the TRL dataset alone in its folder (load_dataset(<run>/select/dpo),
    # trl dpo --dataset_name), in rank order with one shard of texts in memory at a time
    written = write_select_outputs(run.root / "aggregate" / "pairs.parquet", pool, table, out,
                                   s.chat_format, s.output_format, cfg.score.shard_size)
    inspect, data_file = written["inspect"], written["data_file"]
    cut = pd_cutoff(inspect, s.method)
    before, after = length_stats(inspect), length_stats(inspect[inspect["kept"]])
    summary = {"method": s.method, "n_pool": len(pool), "n_selected": sel.n_select_,
               "n_budget": sel.n_budget_, "dataset": str(out / "dpo"),
               "data_file": str(data_file), "chat_format": s.chat_format, "pd_cutoff": cut,
               "length_pool": before, "length_kept": after}
    from .align.irg import policy_tokenizer
    from .select.handoff import write_handoff

    summary.update(write_handoff(cfg, run.root, data_file, summary, *policy_tokenizer(cfg)))
    if cut is not None:
        log.info("select    kept %d of %d pairs: PD %s %.4f (the cut-off); chosen longer in "
                 "%.0f%% of kept pairs vs %.0f%% of the pool", summary["n_selected"], len(pool),
                 "<=" if s.method == "pd" else ">=", cut, 100 * after.get("share_chosen_longer", 0),
                 100 * before.get("share_chosen_longer", 0))
    if sel.n_select_ < sel.n_budget_:
        log.info("select    the threshold rule kept %d pairs, below the budget's %d",
                 sel.n_select_, sel.n_budget_)
    write_json(out / "meta.json", summary)
    return summary


def stage_report(cfg: RunConfig, run: RunDir) -> dict:
    from .report.run_report import build_report
    from .report.html import render_html, write_figures

    report, markdown = build_report(cfg, run)
    for w in report["warnings"]:
        log.warning("report: %s", w)
    figures = write_figures(report, run, run.stage("report"))  # PNGs in <run>/report/
    write_json(run.root / "report.json", report)
    write_text(run.root / "report.md", markdown)
    write_text(run.root / "report.html", render_html(report, cfg, figures))
    from .select.card import add_verdict

    add_verdict(run.root)  # the hand-off's dataset card carries the verdict too
    return {"report": str(run.root / "report.md"), "html": str(run.root / "report.html"),
            "n_warnings": len(report["warnings"])}


def _stage_align(cfg: RunConfig, run: RunDir) -> dict:
    from .policy_stages import stage_align

    return stage_align(cfg, run)


def _stage_eval(cfg: RunConfig, run: RunDir) -> dict:
    from .policy_stages import stage_eval

    return stage_eval(cfg, run)


STAGE_FUNCS: dict[str, Callable[..., dict]] = {
    "ingest": stage_ingest, "aggregate": stage_aggregate, "proxy": stage_proxy,
    "score": stage_score, "select": stage_select, "report": stage_report,
    "align": _stage_align, "eval": _stage_eval,
}
# opt-in stages after the report: DPO on CPU takes minutes to hours
POLICY_STAGES = ["align", "eval"]
ALL_STAGES = STAGES + POLICY_STAGES


# ----------------------------------------------------------------------------- fingerprints
# config sections each stage's result depends on (cumulative along the pipeline)
_SECTIONS = {"ingest": ["seed", "data"], "aggregate": ["aggregate"], "proxy": ["proxy"],
             "score": ["score"], "select": ["select"], "report": [], "align": ["align"],
             "eval": ["eval"]}


def config_fingerprint(cfg: RunConfig, name: str) -> str:
    """Hash of the config sections stage ``name`` (and every stage before it) depends on, and
    of the input data's content (every stage depends on ingest)."""
    import hashlib
    import json

    from .run.fingerprint import input_fingerprint

    d = cfg.to_dict()
    keys = [k for st in ALL_STAGES[: ALL_STAGES.index(name) + 1] for k in _SECTIONS[st]]
    extra = {}
    if "proxy" in keys:  # a reward source read from files: editing them re-runs the proxy stage
        from .run.fingerprint import reward_source_fingerprint

        extra = reward_source_fingerprint(cfg.proxy)
    if "select" in keys:  # the hand-off's token check and select.method=irg read the policy
        extra["_policy"] = [d["align"]["policy"], d["align"]["max_length"]]
    blob = json.dumps({**{k: d[k] for k in keys}, "_input": input_fingerprint(cfg.data)["digest"],
                       **extra}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]
