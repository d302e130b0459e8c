"""The verdict (report/verdict.py) on synthetic report inputs: PD wins, the margin wins, the
length rule wins, proxies at chance, no overall label; and it agrees with the measurement."""

import numpy as np
import pandas as pd
import pytest

from pdselect.report.markdown import _md_verdict
from pdselect.report.verdict import build_verdict
from pdselect.stats import delong_auc

GOOD = {"a": {"val_accuracy": 0.85, "n_val": 300}, "b": {"val_accuracy": 0.8, "n_val": 300}}
CHANCE = {"a": {"val_accuracy": 0.52, "n_val": 100}, "b": {"val_accuracy": 0.45, "n_val": 40}}


def _pool(n=2000, pd_noise=0.5, margin_noise=2.0, seed=0, overall=True):
    """agrees ~ Bernoulli(0.7); PD low and margin high on agreeing pairs, with noise."""
    rng = np.random.default_rng(seed)
    agrees = (rng.random(n) < 0.7).astype(float)
    sig = 2 * agrees - 1
    pool = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "aspect": "a",
                         "pd": -sig + rng.normal(0, pd_noise, n),
                         "margin": sig + rng.normal(0, margin_noise, n),
                         "len_chosen": 100 + rng.integers(0, 50, n),
                         "len_rejected": 100 + rng.integers(0, 50, n)})
    if overall:
        pool["h_agrees_overall"] = agrees
    return pool


def _kept(pool, share=0.3):
    n = int(share * len(pool))
    pd_mask = np.zeros(len(pool), bool)
    pd_mask[np.argsort(pool["pd"].to_numpy(), kind="stable")[:n]] = True
    m_mask = np.zeros(len(pool), bool)
    m_mask[np.argsort(-pool["margin"].to_numpy(), kind="stable")[:n]] = True
    return {"pd": pd_mask, "margin": m_mask}


def test_pd_wins_when_its_interval_separates():
    pool = _pool(pd_noise=0.5, margin_noise=2.0)
    v = build_verdict(GOOD, pool, None, _kept(pool))
    assert v["selector"] == "pd" and v["confidence"] == "clear"
    assert v["text"].startswith("Use PD")
    e = v["evidence"]
    # the verdict agrees with the held-out measurement
    y = pool["h_agrees_overall"].to_numpy() == 1
    assert e["auc"]["pd"]["auc"] == pytest.approx(delong_auc(-pool["pd"], y)[0])
    assert e["auc"]["pd"]["auc"] > e["auc"]["margin"]["auc"] > e["auc"]["length"]["auc"]
    assert e["differences_vs_best"]["margin"]["ci95"][0] > 0
    assert "DeLong" in e["method"] and "Wilson" in e["method"]


def test_margin_wins():
    pool = _pool(pd_noise=2.0, margin_noise=0.5)
    v = build_verdict(GOOD, pool, None, _kept(pool))
    assert v["selector"] == "margin" and v["confidence"] == "clear"
    assert "margin" in v["text"].split(":")[0]


def test_close_selectors_cannot_be_told_apart():
    pool = _pool(n=300, pd_noise=1.0, margin_noise=1.0, seed=3)
    v = build_verdict(GOOD, pool, None, _kept(pool))
    assert v["selector"] is None and v["confidence"] == "cannot tell"
    assert v["text"].startswith("Cannot tell PD and the margin") or \
        v["text"].startswith("Cannot tell the margin")


def test_length_rule_wins_and_says_pd_adds_nothing():
    pool = _pool(pd_noise=3.0, margin_noise=3.0)
    sig = 2 * pool["h_agrees_overall"] - 1
    pool["len_chosen"] = 120 + 30 * sig
    pool["len_rejected"] = 120.0
    v = build_verdict(GOOD, pool, None, _kept(pool))
    assert v["selector"] == "length"
    assert "adds nothing here that a length filter would not" in v["text"]


def test_without_a_length_column_the_length_rule_is_left_out():
    pool = _pool().drop(columns=["len_chosen", "len_rejected"])
    v = build_verdict(GOOD, pool, None, _kept(pool))
    assert "length" not in v["evidence"]["auc"] and not v["evidence"]["length_available"]
    assert v["selector"] == "pd" and "length rule was not compared" in v["text"]


def test_chance_proxies_without_overall_say_pd_is_noise():
    pool = _pool(overall=False)
    v = build_verdict(CHANCE, pool, None, _kept(pool))
    assert v["selector"] is None and v["confidence"] == "none"
    assert v["text"].startswith("PD is noise here")
    for backend in ("proxy.backend=scores", "proxy.backend=reward_model",
                    "proxy.backend=multihead", "more data"):
        assert backend in v["text"]
    assert v["evidence"]["aspects_at_chance"] == ["a", "b"]
    # a margin model better than chance is named as the alternative meanwhile
    v = build_verdict(CHANCE, pool, None, _kept(pool), {"val_accuracy": 0.7, "n_val": 400})
    assert "select.method=margin is the stronger choice" in v["text"]
    assert v["evidence"]["margin_reliability"]["ci95"][0] > 0.5
    v = build_verdict(CHANCE, pool, None, _kept(pool), {"val_accuracy": 0.5, "n_val": 40})
    assert "not better than chance." in v["text"] and "select.method=margin" not in v["text"]


def test_chance_proxies_with_overall_still_measure_and_add_the_advice():
    pool = _pool(pd_noise=50.0, margin_noise=50.0)  # PD and margin no better than random
    v = build_verdict(CHANCE, pool, None, _kept(pool))
    assert v["selector"] in (None, "length")
    assert "PD is noise here" in v["text"] and "proxy.backend=scores" in v["text"]


def test_no_overall_label_cannot_tell_with_reliability_and_overlap():
    pool = _pool(overall=False)
    kept = _kept(pool)
    v = build_verdict(GOOD, pool, None, kept)
    assert v["selector"] is None and v["confidence"] == "cannot tell"
    assert "no overall preference" in v["text"] and "2 of 2 aspect proxies" in v["text"]
    a, b = kept["pd"], kept["margin"]
    want = (a & b).sum() / (a | b).sum()
    assert v["evidence"]["jaccard_pd_margin"] == pytest.approx(want)
    assert f"Jaccard {want:.2f}" in v["text"]
    lo, hi = v["evidence"]["proxy_reliability"]["a"]["ci95"]
    assert lo < 0.85 < hi
    md = "\n".join(_md_verdict(v))
    assert md.startswith("## Verdict") and "**no selector** (confidence: cannot tell)" in md
    assert "Jaccard" in md


def test_kept_agreement_is_evidence():
    pool = _pool()
    comparison = {"pool": {}, "pd": {"agreement": 0.9, "agreement_ci95": [0.87, 0.93],
                                     "n_known": 600, "n_selected": 600}}
    v = build_verdict(GOOD, pool, comparison, _kept(pool))
    assert v["evidence"]["kept"]["pd"]["agreement_ci95"] == [0.87, 0.93]
    assert "0.870-0.930" in "\n".join(_md_verdict(v))


def test_weights_recorded_and_reliability_advice_only_when_off():
    from pdselect.config import load_config
    from pdselect.report.run_report import selection_warnings, weights_part
    from pdselect.stats import wilson_interval

    proxy = {"aspects": {"a": {"val_accuracy": 0.9, "n_val": 20},
                         "b": {"val_accuracy": 0.52, "n_val": 100}}}
    rel = weights_part(load_config(None, ["score.weighting=reliability"]), proxy, ["a", "b"])
    assert rel["weighting"] == "reliability" and "lower end of the 95% Wilson" in rel["rule"]
    assert rel["weights"]["a"] == pytest.approx(2 * wilson_interval(18, 20)[0] - 1)
    assert rel["weights"]["b"] == 0.0
    eq = weights_part(load_config(None, []), proxy, ["a", "b"])
    assert eq["weights"] == {"a": 1.0, "b": 1.0}
    report = {"proxy": proxy, "conflict_level_drop": None,
              "selection": {"method": "pd", "pd_cutoff": -1.0, "n_kept_pd_positive": 0,
                            "length_before": None, "length_after": None}}
    off = " ".join(selection_warnings({**report, "pd_weights": eq}))
    on = " ".join(selection_warnings({**report, "pd_weights": rel}))
    assert "consider score.weighting=reliability" in off
    assert "consider score.weighting=reliability" not in on and "'b'" in on
    # one summary line for the chance aspects, not one per aspect
    assert sum("not better than chance" in w for w in selection_warnings(
        {**report, "proxy": {"aspects": {k: {"val_accuracy": 0.5, "n_val": 50}
                                         for k in "abcde"}}})) == 1


def test_tie_with_the_length_rule_says_who_is_still_behind():
    pool = _pool(pd_noise=0.5, margin_noise=3.0)
    pool["len_chosen"] = -1000.0 * pool["pd"]   # the length rule ranks exactly as PD does
    pool["len_rejected"] = 0.0
    v = build_verdict(GOOD, pool, None, _kept(pool))
    assert v["selector"] is None and v["confidence"] == "cannot tell"
    assert v["text"].startswith("Cannot tell PD and the length rule apart")
    assert "PD is ahead of the margin" in v["text"]
    md = "\n".join(_md_verdict(v))
    assert "+0.000 to +0.000" in md  # differences are printed signed, 'to' not a dash


def test_verdict_agrees_with_the_measurement_on_a_bundled_set(tmp_path):
    """A real run (USR Persona-Chat, overall label known): the verdict's AUCs are the report's
    conflict AUCs, a named winner has the largest, and report.md opens with it."""
    import json

    from pdselect.config import load_config
    from pdselect.pipeline import run_pipeline

    cfg = load_config(None, [f"run_dir={tmp_path}", "data.source=usr_persona_chat",
                             "proxy.epochs=30", "select.compare=[pd, margin, random]"])
    run_pipeline(cfg)
    rep = json.loads((tmp_path / "report.json").read_text())
    v, comp = rep["verdict"], rep["selection"]["comparison"]
    assert list(rep)[0] == "verdict"
    for m in ("pd", "margin"):
        assert v["evidence"]["auc"][m]["auc"] == pytest.approx(comp[m]["auc"], abs=1e-12)
        lo, hi = v["evidence"]["kept"][m]["agreement_ci95"]
        assert lo <= 1 - comp[m]["conflict_rate"] <= hi
    aucs = {m: a["auc"] for m, a in v["evidence"]["auc"].items()}
    if v["selector"] is not None:
        assert aucs[v["selector"]] == max(aucs.values())
    else:
        assert v["confidence"] == "cannot tell"
    md = (tmp_path / "report.md").read_text()
    assert md.split("\n\n")[1] == "## Verdict"
