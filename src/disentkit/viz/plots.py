"""Matplotlib figures: training curves (``metrics.jsonl``), MI heat maps, and the aggregate plots
(a metric against a hyperparameter with error bars; per-model violin plots as in Locatello et al.
2019, Fig. 7). Every function writes a PNG with the non-interactive Agg backend and returns its
path."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "plot_metric_vs_param",
    "plot_mi_matrix",
    "plot_training_curves",
    "plot_violin",
    "read_metrics_jsonl",
]

#: keys of metrics.jsonl that are not curves worth a panel of their own
_NOT_CURVES = ("step", "time", "epoch")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 90) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path


def read_metrics_jsonl(path: Path) -> list[dict[str, Any]]:
    """The logged rows of a run's ``metrics.jsonl``; a torn last line (a run killed while
    writing) is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: Path, max_panels: int = 12) -> Path:
    """One panel per logged scalar against ``step``; ``kl_per_dim/*`` share one panel."""
    if not rows:
        raise ValueError("no logged rows to plot (metrics.jsonl is empty)")
    plt = _plt()
    keys: list[str] = []
    per_dim: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k in _NOT_CURVES or not _is_number(v):
                continue
            if k.startswith("kl_per_dim/"):
                if k not in per_dim:
                    per_dim.append(k)
            elif k not in keys:
                keys.append(k)
    per_dim.sort(key=lambda k: int(k.split("/")[1]) if k.split("/")[1].isdigit() else 0)
    panels: list[tuple[str, list[str]]] = [(k, [k]) for k in keys][: max_panels - bool(per_dim)]
    if per_dim:
        panels.append(("kl per dimension", per_dim))
    if not panels:
        raise ValueError("metrics.jsonl has no numeric columns to plot")
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.3 * cols, 2.8 * nrows), squeeze=False)
    for i, (title, series) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        for key in series:
            pts = [(r.get("step", n), r[key]) for n, r in enumerate(rows) if _is_number(r.get(key))]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, lw=1.2, label=key.split("/")[-1] if len(series) > 1 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        if len(series) > 1:
            ax.legend(fontsize=6, ncol=2, title="z", title_fontsize=6)
    for i in range(len(panels), nrows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_mi_matrix(
    mi: np.ndarray, path: Path, factor_names: Sequence[str] | None = None,
    title: str = "normalised mutual information I(z_i; v_k) / H(v_k)",
) -> Path:
    """Heat map of a (D codes, K factors) MI matrix with the values written in the cells."""
    plt = _plt()
    mi = np.asarray(mi, dtype=np.float64)
    num_codes, num_factors = mi.shape
    names = list(factor_names) if factor_names else [f"v{k}" for k in range(num_factors)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * num_factors, 1.0 + 0.4 * num_codes))
    vmax = max(1.0, float(np.nanmax(mi))) if mi.size else 1.0
    image = ax.imshow(mi, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(num_factors), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(num_codes), [f"z{i}" for i in range(num_codes)], fontsize=8)
    for i in range(num_codes):
        for k in range(num_factors):
            value = mi[i, k]
            ax.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 0.6 * vmax else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def plot_metric_vs_param(
    series: Mapping[str, Sequence[tuple[float, float, float, int]]],
    path: Path, param: str, metric: str,
) -> Path:
    """Mean +- std (error bars) of ``metric`` against ``param``; one line per series label.

    ``series[label]`` is a list of (x, mean, std, n); std is NaN for n = 1 (drawn without a bar).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for label, points in series.items():
        points = sorted(points)
        x = [p[0] for p in points]
        y = [p[1] for p in points]
        err = [0.0 if not math.isfinite(p[2]) else p[2] for p in points]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, lw=1.3, label=label or None)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {param} (mean ± std over seeds)", fontsize=9)
    xs = [p[0] for pts in series.values() for p in pts]
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 50:
        ax.set_xscale("log")
    if any(series.keys()):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_violin(groups: Mapping[str, Sequence[float]], path: Path, metric: str, by: str) -> Path:
    """Violin plot (with a box plot inside and the points) of ``metric`` per group, the way
    Locatello et al. (2019) show score distributions over seeds and hyperparameters."""
    plt = _plt()
    labels = list(groups)
    data = [np.asarray(groups[k], dtype=np.float64) for k in labels]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 3.6))
    positions = np.arange(1, len(labels) + 1)
    violin_idx = [i for i, d in enumerate(data) if len(d) >= 2 and np.ptp(d) > 0]
    if violin_idx:
        ax.violinplot([data[i] for i in violin_idx], positions=positions[violin_idx],
                      showextrema=False, widths=0.8)
    ax.boxplot(data, positions=positions, widths=0.18, showfliers=False)
    rng = np.random.RandomState(0)  # deterministic jitter
    for pos, d in zip(positions, data):
        ax.scatter(pos + rng.uniform(-0.08, 0.08, len(d)), d, s=9, color="black", alpha=0.6, zorder=3)
    ax.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {by}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
