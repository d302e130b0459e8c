"""PNG plots for the experiment grid (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .report_experiment import _order

CONFLICT_ORDER = ["natural", "0.1", "0.2", "0.3"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _main_probe(summary: pd.DataFrame) -> str | None:
    probes = sorted(c[:-5] for c in summary.columns if c.startswith("probe_") and c.endswith("_mean"))
    # the weakest regularisation is the regime closest to DPO (BASELINES.md)
    return min(probes, key=lambda c: float(c.split("=")[1])) if probes else None


def _panels(summary: pd.DataFrame):
    """One subplot per dataset: (plt, fig, [(ax, dataset), ...])."""
    plt = _plt()
    datasets = list(summary["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    return plt, fig, list(zip(axes[0], datasets))


def _finish(plt, fig, ax, path: Path) -> None:
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def conflict_robustness(summary: pd.DataFrame, out: Path, metric: str, budget: float = 0.3):
    plt, fig, panels = _panels(summary)
    for ax, ds in panels:
        d = summary[(summary["dataset"] == ds)
                    & ((summary["budget"] == budget) | (summary["budget"] == 1.0))]
        levels = [c for c in CONFLICT_ORDER if c in set(d["conflict"])] or list(d["conflict"].unique())
        for m in _order(d["method"].unique()):
            r = d[d["method"] == m].set_index("conflict").reindex(levels)
            ax.errorbar(range(len(levels)), r[f"{metric}_mean"], yerr=r[f"{metric}_std"],
                        marker="o", capsize=3, label=m)
        ax.set_xticks(range(len(levels)), [c if c == "natural" else f"{float(c):.0%}" for c in levels])
        ax.set_title(ds)
        ax.set_xlabel("conflict level")
        ax.set_ylabel(metric)
    _finish(plt, fig, panels[-1][0], out / f"conflict_robustness_{metric}.png")


def budget_curve(summary: pd.DataFrame, out: Path, metric: str, conflict: str = "natural"):
    plt, fig, panels = _panels(summary)
    for ax, ds in panels:
        d = summary[(summary["dataset"] == ds) & (summary["conflict"] == conflict)]
        for m in _order(d["method"].unique()):
            r = d[d["method"] == m].sort_values("budget")
            if len(r) == 1:  # full-data method: a horizontal reference line
                ax.axhline(r[f"{metric}_mean"].iloc[0], ls="--", lw=1, label=m)
            else:
                ax.errorbar(r["budget"], r[f"{metric}_mean"], yerr=r[f"{metric}_std"],
                            marker="o", capsize=3, label=m)
        ax.set_title(f"{ds} ({conflict} conflict)")
        ax.set_xlabel("budget (share of pairs kept)")
        ax.set_ylabel(metric)
    _finish(plt, fig, panels[-1][0], out / f"budget_curve_{metric}.png")


def pd_histogram(pd_values: np.ndarray, agrees: np.ndarray, out: Path, title: str,
                 name: str = "pd_histogram.png"):
    """PD of pairs that agree with the overall preference vs pairs that conflict."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(np.nanmin(pd_values), np.nanmax(pd_values), 30)
    ax.hist(pd_values[agrees == 1], bins=bins, alpha=0.6, density=True, label="agrees")
    ax.hist(pd_values[agrees == 0], bins=bins, alpha=0.6, density=True, label="conflicts")
    ax.set_xlabel("PD (negative = other aspects agree with the label)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def aspect_conflict_matrix(matrix: pd.DataFrame, out: Path, title: str,
                           name: str = "aspect_conflict_matrix.png"):
    """matrix[k, k'] = share of pairs labelled k that aspect k' rates the other way."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(matrix), 0.8 + 0.7 * len(matrix)))
    im = ax.imshow(matrix.to_numpy(float), cmap="Reds", vmin=0)
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    for i in range(len(matrix)):
        for j in range(len(matrix.columns)):
            v = matrix.iat[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("other aspect k'")
    ax.set_ylabel("label aspect k")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def plot_all(rows: pd.DataFrame, summary: pd.DataFrame, out: Path) -> None:
    if summary.empty:
        return
    probe = _main_probe(summary)
    for metric in [m for m in ("auc", "conflict_rate", probe) if m]:
        conflict_robustness(summary, out, metric)
    if probe:
        budget_curve(summary, out, probe)
    dpo = [c[:-5] for c in summary.columns if c.startswith("dpo_") and c.endswith("_acc_mean")]
    for metric in dpo:
        conflict_robustness(summary[summary[f"{metric}_mean"].notna()], out, metric)
