"""PNG plots (matplotlib, headless): the experiment grid's, and the run report's.

Conventions: every axis has a readable title; each method keeps ONE colour across every figure
(:data:`METHOD_COLOURS`; full-data methods are dashed); a legend lists only what was drawn (no
legend when nothing was); colour bars say what their colour means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: the order methods are listed in, in tables and legends (unknown ones last)
METHOD_ORDER = ["ALL", "OVA", "AVG", "DFPO", "RAND", "RAF", "PD-rati", "PD", "PD-high", "PD-nl",
                "IRG", "LONGER"]
CONFLICT_ORDER = ["natural", "0.1", "0.2", "0.3"]
FULL_DATA = ("ALL", "OVA", "AVG", "DFPO")
# Okabe-Ito (colour-blind safe) for the main methods, Tol's muted colours for the rest
METHOD_COLOURS = {"ALL": "#000000", "OVA": "#8c564b", "AVG": "#999933", "DFPO": "#882255",
                  "RAND": "#7f7f7f", "RAF": "#E69F00", "PD-rati": "#009E73", "PD": "#D55E00",
                  "PD-high": "#0072B2", "PD-nl": "#CC79A7", "IRG": "#56B4E9",
                  "LONGER": "#332288"}
_SPARE = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
          "#dbdb8d", "#9edae5"]
KEPT, DROPPED = "#0072B2", "#9e9e9e"
AGREES, CONFLICTS = "#009E73", "#D55E00"


def method_order(methods) -> list[str]:
    return sorted(methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)


def method_colour(method: str) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _SPARE[sum(map(ord, method)) % len(_SPARE)]  # stable for a name, whatever the order


def metric_label(metric: str) -> str:
    """Axis title of a results column."""
    if metric == "auc":
        return "conflict-detection AUC (train pool)"
    if metric == "conflict_rate":
        return "conflict rate of the training pairs"
    if metric.startswith("probe_l2="):
        return f"held-out probe accuracy (L2 = {metric.split('=', 1)[1]})"
    if metric == "dpo_implicit_acc":
        return "held-out DPO implicit-reward accuracy"
    return metric.replace("_", " ")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _main_probe(summary: pd.DataFrame) -> str | None:
    probes = sorted(c[:-5] for c in summary.columns if c.startswith("probe_l2=")
                    and c.endswith("_mean") and "_" not in c[len("probe_l2="):-5])
    # (the length-controlled companions, probe_l2=X_balanced etc., are not the main metric)
    # the weakest regularisation is the regime closest to DPO (BASELINES.md)
    return min(probes, key=lambda c: float(c.split("=")[1])) if probes else None


def _panels(summary: pd.DataFrame):
    """One subplot per dataset: (plt, fig, [(ax, dataset), ...])."""
    plt = _plt()
    datasets = list(summary["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets) + 1.6, 4),
                             squeeze=False)
    return plt, fig, list(zip(axes[0], datasets))


def _legend(fig, axes) -> bool:
    """One figure legend (right of the panels) with every labelled artist drawn on ``axes``,
    each label once; none when nothing labelled was drawn. Returns whether one was drawn."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab and not lab.startswith("_"):
                seen.setdefault(lab, h)
    if not seen:
        return False
    fig.legend(list(seen.values()), list(seen), loc="center right", fontsize=8, frameon=False,
               title="method")
    return True


def _finish(plt, fig, axes, path: Path) -> None:
    right = 1.0 - 1.5 / fig.get_figwidth() if _legend(fig, axes) else 1.0
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _drawn(values) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).any())


def conflict_robustness(summary: pd.DataFrame, out: Path, metric: str, budget: float = 0.3):
    plt, fig, panels = _panels(summary)
    for ax, ds in panels:
        d = summary[(summary["dataset"] == ds)
                    & ((summary["budget"] == budget) | (summary["budget"] == 1.0))]
        levels = [c for c in CONFLICT_ORDER if c in set(d["conflict"])] or list(d["conflict"].unique())
        for m in method_order(d["method"].unique()):
            r = d[d["method"] == m].set_index("conflict").reindex(levels)
            if f"{metric}_mean" not in r or not _drawn(r[f"{metric}_mean"]):
                continue  # nothing to draw: no legend entry either
            ax.errorbar(range(len(levels)), r[f"{metric}_mean"], yerr=r[f"{metric}_std"],
                        marker="o", capsize=3, label=m, color=method_colour(m),
                        ls="--" if m in FULL_DATA else "-")
        ax.set_xticks(range(len(levels)), [c if c == "natural" else f"{float(c):.0%}" for c in levels])
        ax.set_title(ds)
        ax.set_xlabel("conflict level (share of train pairs whose label disagrees with overall)")
        ax.set_ylabel(metric_label(metric))
    _finish(plt, fig, [a for a, _ in panels], out / f"conflict_robustness_{metric}.png")


def budget_curve(summary: pd.DataFrame, out: Path, metric: str, conflict: str = "natural"):
    plt, fig, panels = _panels(summary)
    for ax, ds in panels:
        d = summary[(summary["dataset"] == ds) & (summary["conflict"] == conflict)]
        for m in method_order(d["method"].unique()):
            r = d[d["method"] == m].sort_values("budget")
            if f"{metric}_mean" not in r or not _drawn(r[f"{metric}_mean"]):
                continue
            if len(r) == 1:  # full-data method: a horizontal reference line
                ax.axhline(r[f"{metric}_mean"].iloc[0], ls="--", lw=1, label=m,
                           color=method_colour(m))
            else:
                ax.errorbar(r["budget"], r[f"{metric}_mean"], yerr=r[f"{metric}_std"],
                            marker="o", capsize=3, label=m, color=method_colour(m))
        ax.set_title(f"{ds} ({conflict} conflict)")
        ax.set_xlabel("budget (share of pairs kept)")
        ax.set_ylabel(metric_label(metric))
    _finish(plt, fig, [a for a, _ in panels], out / f"budget_curve_{metric}.png")


def pd_histogram(pd_values: np.ndarray, agrees: np.ndarray, out: Path, title: str,
                 name: str = "pd_histogram.png"):
    """PD of pairs that agree with the overall preference vs pairs that conflict."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    pd_values, agrees = np.asarray(pd_values, np.float64), np.asarray(agrees, np.float64)
    bins = np.linspace(np.nanmin(pd_values), np.nanmax(pd_values), 30)
    for mask, label, colour in ((agrees == 1, "agrees with overall", AGREES),
                                (agrees == 0, "conflicts with overall", CONFLICTS)):
        if mask.any():
            ax.hist(pd_values[mask], bins=bins, alpha=0.6, density=True, label=label,
                    color=colour)
    ax.set_xlabel("PD (negative = the other aspects agree with the label)")
    ax.set_ylabel("density")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def aspect_conflict_matrix(matrix: pd.DataFrame, out: Path, title: str,
                           name: str = "aspect_conflict_matrix.png",
                           cbar_label: str = "share of label-k pairs that k' rates the other way"):
    """matrix[k, k'] = share of pairs labelled k that aspect k' rates the other way."""
    plt = _plt()
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(2.6 + 0.9 * n, 1.6 + 0.75 * n))
    values = matrix.to_numpy(float)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    im = ax.imshow(values, cmap="Reds", vmin=0, vmax=max(0.5, top))
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(n), matrix.index)
    for i in range(n):
        for j in range(len(matrix.columns)):
            v = matrix.iat[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * max(0.5, top) else "black")
    ax.set_xlabel("other aspect k'")
    ax.set_ylabel("label aspect k")
    ax.set_title(title, fontsize=10)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046)
    cbar.set_label(cbar_label, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def run_pd_histogram(pd_values: np.ndarray, kept: np.ndarray, cutoff: float | None, out: Path,
                     agrees: np.ndarray | None = None, name: str = "pd_histogram.png") -> Path:
    """The run's PD distribution: kept vs dropped pairs (stacked) with the cut-off; with an
    overall label, a second panel of pairs that agree vs conflict with it."""
    plt = _plt()
    pd_values, kept = np.asarray(pd_values, np.float64), np.asarray(kept, bool)
    two = agrees is not None and np.isfinite(np.asarray(agrees, np.float64)).any()
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(11 if two else 6.5, 3.8),
                             squeeze=False)
    bins = np.linspace(pd_values.min(), pd_values.max(), 31) if len(pd_values) else 10
    ax = axes[0][0]
    parts = [(pd_values[kept], "kept", KEPT), (pd_values[~kept], "dropped", DROPPED)]
    parts = [p for p in parts if len(p[0])]
    if parts:
        ax.hist([p[0] for p in parts], bins=bins, stacked=True, label=[p[1] for p in parts],
                color=[p[2] for p in parts])
    if cutoff is not None:
        ax.axvline(cutoff, color="black", ls="--", lw=1, label=f"cut-off {cutoff:.3f}")
    ax.set_xlabel("PD (negative = the other aspects agree with the label)")
    ax.set_ylabel("pairs")
    ax.set_title("PD of the pool: kept vs dropped")
    ax.legend(fontsize=8)
    if two:
        ax2 = axes[0][1]
        agrees = np.asarray(agrees, np.float64)
        for mask, label, colour in ((agrees == 1, "agrees with overall", AGREES),
                                    (agrees == 0, "conflicts with overall", CONFLICTS)):
            if mask.any():
                ax2.hist(pd_values[mask], bins=bins, alpha=0.6, density=True, label=label,
                         color=colour)
        if cutoff is not None:
            ax2.axvline(cutoff, color="black", ls="--", lw=1, label="cut-off")
        ax2.set_xlabel("PD (negative = the other aspects agree with the label)")
        ax2.set_ylabel("density")
        ax2.set_title("PD vs the hidden overall preference")
        if ax2.get_legend_handles_labels()[0]:
            ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return out / name


def length_shift(before: dict, after: dict, out: Path, name: str = "length_shift.png") -> Path:
    """Pool vs kept: share of pairs whose chosen response is longer, and mean lengths."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    groups = [("pool", before, DROPPED), ("kept", after, KEPT)]
    a1.bar([g for g, _, _ in groups], [d.get("share_chosen_longer", np.nan) for _, d, _ in groups],
           color=[c for _, _, c in groups])
    a1.axhline(0.5, color="black", lw=0.8, ls=":")
    a1.set_ylim(0, 1)
    a1.set_ylabel("share of pairs, chosen longer")
    a1.set_title("chosen response longer than rejected")
    x = np.arange(2)
    for i, (g, d, c) in enumerate(groups):
        a2.bar(x + (i - 0.5) * 0.38, [d.get("mean_len_chosen", np.nan),
                                      d.get("mean_len_rejected", np.nan)],
               width=0.38, label=g, color=c)
    a2.set_xticks(x, ["chosen", "rejected"])
    a2.set_ylabel("mean length (characters)")
    a2.set_title("mean response length")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return out / name


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
