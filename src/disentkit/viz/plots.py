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
    "constant_series",
    "curve_panels",
    "plot_metric_vs_param",
    "plot_mi_matrix",
    "plot_training_curves",
    "plot_violin",
    "read_metrics_jsonl",
]

#: keys of metrics.jsonl that are not curves worth a panel of their own
_NOT_CURVES = ("step", "time", "epoch")
#: panel title and y-axis label of logged keys that need more than their name
_CURVE_LABELS = {
    "images_per_s": ("images/s (machine-dependent)", "images / s"),
    "lr": ("learning rate", "lr"),
    "kl": ("kl", "KL (nats)"),
}


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


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(r.get("step", n), float(r[key])) for n, r in enumerate(rows) if _is_number(r.get(key))]


def constant_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``{key: value}`` of the logged scalars that never change (a fixed beta, a constant lr):
    a flat line says less than the number. Needs two logged rows; ``kl_per_dim/*`` is never
    reported here (it is one panel)."""
    if len(rows) < 2:
        return {}
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for row in rows for k in row):
        if key in _NOT_CURVES or key.startswith("kl_per_dim/"):
            continue
        values = [v for _, v in _series(rows, key)]
        if len(values) >= 2 and max(values) - min(values) <= 1e-12 * max(1.0, abs(values[0])):
            out[key] = values[0]
    return out


def curve_panels(rows: Sequence[Mapping[str, Any]], skip: Sequence[str] = (),
                 max_panels: int = 12) -> list[tuple[str, list[str]]]:
    """The panels :func:`plot_training_curves` draws: ``[(title, [keys])]``, one per logged
    scalar not in ``skip``, then ``kl_per_dim/*`` together in one."""
    keys: list[str] = []
    per_dim: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k in _NOT_CURVES or k in skip or not _is_number(v):
                continue
            if k.startswith("kl_per_dim/"):
                if k not in per_dim:
                    per_dim.append(k)
            elif k not in keys:
                keys.append(k)
    per_dim.sort(key=lambda k: int(k.split("/")[1]) if k.split("/")[1].isdigit() else 0)
    panels = [(_CURVE_LABELS.get(k, (k, k))[0], [k]) for k in keys][: max_panels - bool(per_dim)]
    if per_dim:
        panels.append(("KL per latent", per_dim))
    return panels


def _draw_panel(ax, rows: Sequence[Mapping[str, Any]], title: str, series: list[str]) -> None:
    values = []
    for key in series:
        pts = _series(rows, key)
        if pts:
            x, y = zip(*pts)
            values += y
            ax.plot(x, y, lw=1.2, label=f"z{key.split('/')[-1]}" if len(series) > 1 else None)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("KL (nats)" if len(series) > 1 else _CURVE_LABELS.get(series[0], ("", series[0]))[1],
                  fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25)
    # a loss falling over orders of magnitude: the early steps would flatten the rest
    if values and min(values) > 0 and max(values) / min(values) >= 30:
        ax.set_yscale("log")
    if len(series) > 1:  # beside the axes, never over the lines
        ax.legend(fontsize=7, ncol=1 + len(series) // 9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, frameon=False)


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: Path, max_panels: int = 12,
                         skip: Sequence[str] = ()) -> Path:
    """One panel per logged scalar against ``step`` (:func:`curve_panels`; keys in ``skip``,
    e.g. :func:`constant_series`, are left out); ``kl_per_dim/*`` share one panel with its legend
    beside it. A series falling over 30x or more gets a log axis."""
    if not rows:
        raise ValueError("no logged rows to plot (metrics.jsonl is empty)")
    plt = _plt()
    panels = curve_panels(rows, skip, max_panels)
    if not panels:
        raise ValueError("metrics.jsonl has no changing numeric columns to plot")
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.0 * nrows), squeeze=False)
    for i, (title, series) in enumerate(panels):
        _draw_panel(axes[i // cols][i % cols], rows, title, series)
    for i in range(len(panels), nrows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.tight_layout(w_pad=2.5)
    return _save(fig, path)


def plot_mi_matrix(
    mi: np.ndarray, path: Path, factor_names: Sequence[str] | None = None,
    title: str = "normalised mutual information I(z_i; v_k) / H(v_k)",
    kl: Sequence[float] | None = None, collapsed: Sequence[int] = (),
) -> Path:
    """Heat map of a (D codes, K factors) MI matrix with the values written in the cells.

    ``kl`` (one value per row) is shown in the row labels; rows in ``collapsed`` (latents whose
    KL is ~0) are greyed out: the histogram estimator finds MI in the tiny fluctuations of a
    near-constant code, which is not information."""
    plt = _plt()
    mi = np.asarray(mi, dtype=np.float64)
    num_codes, num_factors = mi.shape
    names = list(factor_names) if factor_names else [f"v{k}" for k in range(num_factors)]
    collapsed = {int(i) for i in collapsed}
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * num_factors + (1.0 if kl is not None else 0.0),
                                    1.2 + 0.4 * num_codes))
    vmax = max(1.0, float(np.nanmax(mi))) if mi.size else 1.0
    image = ax.imshow(mi, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(num_factors), names, rotation=30, ha="right", fontsize=8)
    labels = [f"z{i}" + (f"  KL {float(kl[i]):.3f}" if kl is not None else "")
              + ("  collapsed" if i in collapsed else "") for i in range(num_codes)]
    ax.set_yticks(range(num_codes), labels, fontsize=8)
    for i in range(num_codes):
        if i in collapsed:
            ax.axhspan(i - 0.5, i + 0.5, color="#d0d0d0", alpha=0.92, lw=0)
            ax.get_yticklabels()[i].set_color("#888888")
        for k in range(num_factors):
            value = mi[i, k]
            color = "#777777" if i in collapsed else ("white" if value < 0.6 * vmax else "black")
            ax.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    if collapsed:
        title += "\ngrey rows: collapsed latents (KL ~ 0), their MI is estimator noise"
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
