"""report.md: the report dict of run_report.build_report as Markdown, one helper per section.

Every user label (aspect names, file names, reject reasons, paths) goes through
:func:`md_escape`; numbers through :func:`_fmt`.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import RunConfig
_MD_SPECIAL = "\\`*_[]<>|~"


def md_escape(text) -> str:
    """``text`` as literal Markdown inline text: user labels (aspect names, file names, reject
    reasons, paths) cannot open emphasis, code, HTML, links or table cells, nor break a line."""
    text = " ".join(str(text).splitlines()) if text is not None else ""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in text)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return md_escape(v)


# ingest reasons that reject one RATING (the response is kept, that aspect unrated); every
# other ingest reason drops the record or response (data/rows.py)
_RATING_REASON_PREFIX = "rating "


def split_ingest_rejects(rejects: dict[str, int]) -> tuple[int, int]:
    """(records/responses dropped, ratings rejected) from ingest's reject counts."""
    ratings = sum(n for r, n in rejects.items() if r.startswith(_RATING_REASON_PREFIX))
    return sum(rejects.values()) - ratings, ratings


def _ci(lo_hi) -> str:
    lo, hi = lo_hi
    return "n/a" if not (math.isfinite(lo) and math.isfinite(hi)) else f"{lo:.3f}-{hi:.3f}"


def _signed_ci(lo_hi) -> str:
    """An interval of a difference: '+0.003 to +0.022' (a dash would read as a minus)."""
    lo, hi = lo_hi
    return "n/a" if not (math.isfinite(lo) and math.isfinite(hi)) else f"{lo:+.3f} to {hi:+.3f}"


def _holdout_line(r: dict) -> str:
    """Whether inputs were held out for evaluation (aggregate/meta.json's ``holdout`` when the
    aggregate stage records it; else the test split's size)."""
    agg = r["aggregate"]
    h = r.get("holdout")
    n = (f"{agg.get('n_test', 0)} of {agg.get('n_pairs', 0)} pairs are held out (test split, "
         "never selected)" if agg.get("n_test") else "no pair is held out: selection sees all")
    if h is None:
        return f"Evaluation hold-out: {n}."
    if isinstance(h, dict):
        h = ", ".join(f"{k}={v}" for k, v in h.items())
    elif isinstance(h, bool):
        h = "yes" if h else "no"
    return f"Evaluation hold-out: {md_escape(h)}; {n}."


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out + [""]


def render_markdown(r: dict, cfg: RunConfig) -> str:
    """report.md: the ``report`` dict of :func:`build_report`, one helper per section."""
    L = _md_summary(r, cfg)
    L[2:2] = _md_verdict(r.get("verdict"))  # first after the title
    L += _md_warnings(r)
    L += _md_counts(r)
    L += _md_drops(r)
    L += _md_proxies(r)
    L += _md_conflict(r)
    s = r["selection"]
    L += _md_selection(s)
    L += _md_comparison(s)
    L += _md_stage_times(r)
    return "\n".join(L)


def _md_summary(r: dict, cfg: RunConfig) -> list[str]:
    """Title, run line, PD cut-off, the TRL dataset folder and the hold-out line."""
    L = [f"# pdselect report: {md_escape(r['source'])}", "",
         f"Run {md_escape(r['run_dir'])}, seed {r['seed']}, selector "
         f"**{md_escape(cfg.select.method)}**, budget "
         + (f"{cfg.select.budget_count} pairs" if cfg.select.budget_count
            else f"{cfg.select.budget:.0%}") + ".", ""]
    s = r["selection"]
    if s.get("pd_cutoff") is not None:
        L += [f"PD cut-off: kept pairs have PD {'<=' if s['method'] == 'pd' else '>='} "
              f"{s['pd_cutoff']:.4f} ({s.get('n_kept_pd_positive', 0)} kept pairs with PD > 0).",
              ""]
    if s.get("dataset"):
        L += [f"TRL dataset ({md_escape(s.get('chat_format'))} format): "
              f"{md_escape(s['dataset'])} (`load_dataset` on the folder; every pool pair with "
              "its gaps, PD, rank and kept flag: select/inspect.parquet; figures: report.html).",
              ""]
    return L + [_holdout_line(r), ""]


def _md_warnings(r: dict) -> list[str]:
    L = ["## Warnings", ""]
    L += [f"- {md_escape(w)}" for w in r.get("warnings", [])] or ["None."]
    return L + [""]


def count_rows(r: dict) -> list[list]:
    """What each stage kept and dropped, one row per stage (report.md and report.html)."""
    ing, agg, sel = r["ingest"], r["aggregate"], r["selection"]
    dropped, ratings = split_ingest_rejects(ing["rejects"])
    what = "responses" if ing["kind"] == "rated" else "pairs"
    return [["ingest", ing.get("n_responses", ing.get("n_pairs")), what,
             f"{dropped} records/{what} dropped, {ratings} ratings rejected (response kept)"],
            ["aggregate", agg["n_pairs"], f"pairs ({agg['n_train']} train / {agg['n_test']} test)",
             f"{sum(agg['rejects'].values())} pairs dropped"],
            ["select", sel["n_selected"], f"of {sel['n_pool']} train pairs",
             f"{sel['n_pool'] - sel['n_selected']} pairs not selected"]]


def drop_rows(r: dict) -> list[list]:
    """Ingest's and aggregate's reject counts by reason (report.md and report.html)."""
    return [[st, _reject_kind(st, reason, r["ingest"]["kind"]), reason, n]
            for st in ("ingest", "aggregate") for reason, n in r[st]["rejects"].items()]


def _md_counts(r: dict) -> list[str]:
    """What each stage kept and dropped, one row per stage."""
    return ["## Counts per stage", ""] + _table(["stage", "kept", "what", "dropped or rejected"],
                                                count_rows(r))


def _reject_kind(stage: str, reason: str, ingest_kind: str) -> str:
    """What a reject reason of ``stage`` removed: a pair, a rating, a record or a response."""
    if stage == "aggregate":
        return "pair dropped"
    if reason.startswith(_RATING_REASON_PREFIX):
        return "rating rejected (response kept)"
    return "record dropped" if ingest_kind == "pairs" else "response dropped"


def _md_drops(r: dict) -> list[str]:
    """Ingest's and aggregate's reject counts by reason; nothing when there are none."""
    drops = drop_rows(r)
    if not drops:
        return []
    return (["Dropped or set aside, by reason (details in each stage's rejects.jsonl):", ""]
            + _table(["stage", "what", "reason", "count"], drops))


def _md_proxy_row(name: str, m: dict, interval_of, weight=None) -> list:
    return [name, m.get("n_train"), m.get("n_val"), m.get("val_accuracy"),
            _ci(interval_of(m)), weight, m.get("length_corr_before"), m.get("length_corr_after")]


def score_only_note(r: dict) -> str:
    """What 'held-out accuracy' means when the rewards were given, not trained."""
    backends = {m.get("backend") for m in r["proxy"].get("aspects", {}).values()}
    given = sorted(backends & {"scores", "reward_model"})
    if not given:
        return ""
    what = {"scores": "your own scores (proxy.backend=scores)",
            "reward_model": "off-the-shelf reward models (proxy.backend=reward_model)"}
    return (f"The rewards are {what[given[0]]}: nothing was trained, so 'held-out accuracy' is "
            "how often each aspect's reward agrees with that aspect's own label, on every "
            "train pair of the aspect.")


def _md_proxies(r: dict) -> list[str]:
    """Each aspect proxy's held-out accuracy (and the unified margin model's, when trained)."""
    from ..reward.diagnostics import interval_of

    pw = r.get("pd_weights") or {}
    weights = pw.get("weights", {})
    rows = [_md_proxy_row(a, m, interval_of, weights.get(a))
            for a, m in r["proxy"]["aspects"].items()]
    if "unified" in r["proxy"]:
        m = next(iter(r["proxy"]["unified"].values()))
        rows.append(_md_proxy_row("(unified, margin baseline)", m, interval_of))
    L = ["## Proxy reward models", ""] + _table(
        ["aspect", "train pairs", "val pairs", "held-out accuracy", "95% CI", "PD weight",
         "reward-length r (rho=0)", "reward-length r (debiased)"], rows)
    if pw:
        L += [f"PD weights used (score.weighting={md_escape(pw['weighting'])}): "
              f"{md_escape(pw['rule'])}.", ""]
    note = score_only_note(r)
    return L + ([note, ""] if note else [])


def _md_conflict(r: dict) -> list[str]:
    """The aspect conflict matrices, from the proxies and from the true ratings when known."""
    L = []
    for key, what in (("proxy", "the proxies' reward gaps"), ("true", "the true ratings")):
        m = r.get("conflict_matrix", {}).get(key)
        if m:
            names = list(m)
            L += [f"Aspect conflict matrix from {what}: share of pairs labelled by the row's "
                  "aspect that the column's aspect rates the other way.", ""]
            L += _table(["label aspect (row) / other aspect", *[md_escape(a) for a in names]],
                        [[a, *[m[a][b] for b in names]] for a in names])
    return L


def _md_selection(s: dict) -> list[str]:
    """Per-aspect coverage and the length statistics, pool vs selected."""
    L = ["## Selection", "", "Per-aspect coverage:", ""]
    aspects = sorted(set(s["coverage_before"]) | set(s["coverage_after"]))
    L += _table(["aspect", "pool", "selected", "share kept"],
                [[a, s["coverage_before"].get(a, 0), s["coverage_after"].get(a, 0),
                  s["coverage_after"].get(a, 0) / max(1, s["coverage_before"].get(a, 0))]
                 for a in aspects])
    lb, la = s["length_before"], s["length_after"]
    if lb and la:
        L += ["Length (characters):", ""]
        L += _table(["", "mean len chosen", "mean len rejected", "share chosen longer"],
                    [["pool", lb["mean_len_chosen"], lb["mean_len_rejected"],
                      lb["share_chosen_longer"]],
                     ["selected", la["mean_len_chosen"], la["mean_len_rejected"],
                      la["share_chosen_longer"]]])
    return L


def _md_comparison(s: dict) -> list[str]:
    """The selectors against the hidden overall preference; nothing when it is unknown."""
    if "comparison" not in s:
        return []
    c = s["comparison"]
    L = ["## Against the hidden overall preference (evaluation only)", "",
         f"Pool: {c['pool']['n_pairs']} train pairs, {c['pool']['n_with_overall']} with an "
         f"overall preference, conflict rate {_fmt(c['pool']['conflict_rate'])}. "
         "AUC = ROC-AUC of the selector's keep-score for 'agrees with overall' "
         "(for PD the keep-score is -PD); conflict rate of the kept subset.", ""]
    rows = [[m, v.get("auc"), v["n_selected"], v["conflict_rate"],
             _ci(v.get("agreement_ci95", (math.nan, math.nan)))]
            for m, v in c.items() if m != "pool"]
    return L + _table(["selector", "conflict AUC", "kept", "conflict rate of kept",
                       "agreement of kept, 95% CI (Wilson)"], rows)


def _md_stage_times(r: dict) -> list[str]:
    """Wall time per stage and the versions the run used (manifest.json)."""
    env = r["manifest"].get("environment", {})
    vers = [[k, v] for k, v in env.get("versions", {}).items()]
    vers += [[k, env[k]] for k in ("python", "git_sha") if k in env]
    L = ["## Stage times", ""] + _table(["stage", "seconds"], [
        [k, v["wall_seconds"]] for k, v in r["manifest"]["stages"].items()])
    return L + (["## Versions", ""] + _table(["package", "version"], vers) if vers else [])


def _md_verdict(v: dict | None) -> list[str]:
    """The verdict (verdict.py) and the evidence it rests on."""
    if not v:
        return []
    e = v["evidence"]
    L = ["## Verdict", "", f"**{md_escape(v['selector'] or 'no selector')}** (confidence: "
         f"{md_escape(v['confidence'])}). {md_escape(v['text'])}", ""]
    if e.get("auc"):
        diffs = e.get("differences_vs_best", {})
        L += _table(["selector", "conflict AUC", "95% CI (DeLong)", "best minus this",
                     "95% CI of the difference (paired DeLong)",
                     "kept agreeing with overall, 95% CI"],
                    [[m, a["auc"], _ci(a["ci95"]), diffs[m]["diff"] if m in diffs else "best",
                      _signed_ci(diffs[m]["ci95"]) if m in diffs else "",
                      _ci(e.get("kept", {}).get(m, {}).get("agreement_ci95",
                                                            (math.nan, math.nan)))]
                     for m, a in e["auc"].items()])
    if e.get("jaccard_pd_margin") is not None:
        L += [f"Overlap of PD's and the margin's kept sets (Jaccard): "
              f"{e['jaccard_pd_margin']:.3f}.", ""]
    return L + [f"Intervals: {md_escape(e['method'])}.", ""]
