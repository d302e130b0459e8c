"""The hidden overall preference and true ratings (h_ columns) never reach proxy training,
scoring, selection, the probe's training subsets or the DPO training files."""

import pandas as pd
import pytest

import pdselect.experiments.grid as E
import pdselect.reward as R
import pdselect.reward.base as RB
import pdselect.select.selectors as S
from pdselect.config import load_config
from pdselect.pipeline import run_pipeline
from pdselect.data.schema import HIDDEN_PREFIX

SEEN: list[str] = []


def _check(df, where):
    if isinstance(df, pd.DataFrame):
        SEEN.append(where)
        hidden = [c for c in df.columns if c.startswith(HIDDEN_PREFIX)]
        assert not hidden, f"{where} received hidden columns {hidden}"


@pytest.fixture
def guarded(monkeypatch):
    SEEN.clear()
    real_models, real_fit, real_gaps = RB.train_models, S.BaseSelector.fit, RB.ProxyModels.gaps

    def train_models(pairs, *a, **k):
        _check(pairs, "proxy training")
        return real_models(pairs, *a, **k)

    def gaps(self, pairs, *a, **k):
        _check(pairs, "scoring")
        return real_gaps(self, pairs, *a, **k)

    def fit(self, scores, y=None):
        _check(scores, "selection")
        return real_fit(self, scores, y)

    monkeypatch.setattr(RB, "train_models", train_models)
    monkeypatch.setattr(R, "train_models", train_models)
    monkeypatch.setattr(RB.ProxyModels, "gaps", gaps)
    monkeypatch.setattr(S.BaseSelector, "fit", fit)
    return SEEN


def test_pipeline_never_passes_hidden_columns(guarded, tmp_path):
    cfg = load_config(None, [f"run_dir={tmp_path}", "data.source=usr_persona_chat",
                             "proxy.epochs=30", "select.compare=[pd]"])
    run_pipeline(cfg, stages=["ingest", "aggregate", "proxy", "score", "select"])
    assert {"proxy training", "scoring", "selection"} <= set(guarded)
    dpo = pd.read_parquet(tmp_path / "select" / "dpo" / "train-00000.parquet")
    assert not [c for c in dpo.columns if c.startswith(HIDDEN_PREFIX)]


def test_experiment_probe_and_selection_never_see_hidden_columns(guarded, monkeypatch, tmp_path):
    real_probe = E.probe_many

    def probe_many(features_fn, train, subsets, *a, **k):
        _check(train, "probe train table")
        for name, sub in subsets.items():
            _check(sub, f"probe subset {name}")
        return real_probe(features_fn, train, subsets, *a, **k)

    monkeypatch.setattr(E, "probe_many", probe_many)
    cfg = load_config(None, ["experiment.datasets=[usr_persona_chat]", "experiment.seeds=[0]",
                             "experiment.conflict_levels=[null]", "experiment.budgets=[0.3]",
                             "experiment.probe_l2=[0.01]", "proxy.epochs=30"])
    E.run_experiment(cfg, tmp_path)
    assert "probe subset ('PD', 0.3)" in guarded and "proxy training" in guarded
