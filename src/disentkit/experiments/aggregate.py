"""Aggregate many runs into mean ± std tables over seeds (like FDAE's ``collect_result.py`` and
disentanglement_lib's ``aggregate_results``: glob + group-by every setting except the seed),
without pandas.

A run is a directory with ``config.yaml`` and ``results.json``; its settings are the flattened
config (``model.beta``) and its scores the flattened scalar leaves of ``results["metrics"]``
(``mig.discrete_mig``). Runs are grouped by the ``by`` keys (default: every config key that
varies across the runs, except seeds, names and paths); each group reports, per metric, the mean,
the *sample* standard deviation (ddof = 1; undefined for a single run) and n.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from disentkit.viz.report import flatten_leaves, flatten_metrics

__all__ = [
    "GroupStats",
    "RunRecord",
    "aggregate",
    "collect_runs",
    "find_run_dirs",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_outputs",
]

#: config keys that never define a setting (they differ between seeds/runs of one setting)
IGNORED_KEYS = ("seed", "name", "out_dir", "data_root", "imports", "eval.seed")


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    scores: dict[str, float]


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories (holding ``config.yaml``) at or below each path, sorted, deduplicated."""
    found: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        if (root / "config.yaml").is_file():
            found.add(root.resolve())
        found.update(p.parent.resolve() for p in root.rglob("config.yaml"))
    return sorted(found)


def collect_runs(paths: Iterable[str | Path]) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """Load every run below ``paths``; returns (runs with results, [(path, why skipped)])."""
    runs, skipped = [], []
    for run_dir in find_run_dirs(paths):
        results_path = run_dir / "results.json"
        if not results_path.is_file():
            skipped.append((run_dir, "no results.json (not evaluated yet)"))
            continue
        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
            results = json.loads(results_path.read_text())
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            skipped.append((run_dir, f"unreadable: {err}"))
            continue
        scores = flatten_metrics(results.get("metrics", {}))
        if not scores:
            skipped.append((run_dir, "results.json has no scalar metrics"))
            continue
        flat = {k: (tuple(v) if isinstance(v, list) else v) for k, v in flatten_leaves(config).items()}
        runs.append(RunRecord(run_dir, flat, scores))
    return runs, skipped


def varying_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Config keys whose values differ between runs (minus :data:`IGNORED_KEYS`), in config order."""
    keys: list[str] = []
    for run in runs:
        for k in run.config:
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        if k in IGNORED_KEYS:
            continue
        values = {repr(r.config.get(k)) for r in runs}
        if len(values) > 1:
            out.append(k)
    return out


def select_metrics(runs: Sequence[RunRecord], wanted: Sequence[str] | None) -> list[str]:
    """Metric keys to report: exact keys, or prefixes (``mig`` -> every ``mig.*``); all if empty."""
    available: list[str] = []
    for run in runs:
        for k in run.scores:
            if k not in available:
                available.append(k)
    if not wanted:
        return available
    chosen = []
    for w in wanted:
        matches = [k for k in available if k == w or k.startswith(w + ".")]
        if not matches:
            raise KeyError(f"no metric '{w}' in the results; available: {', '.join(available)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1 -- NaN for one value, n) over the finite values."""
    xs = [float(v) for v in values if math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var), n


@dataclass
class GroupStats:
    """One setting: its key values, and per metric (mean, std, n) plus the raw values."""

    setting: dict[str, Any]
    stats: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    def label(self) -> str:
        return ", ".join(f"{k}={_fmt_value(v)}" for k, v in self.setting.items()) or "all runs"


def _fmt_value(v: Any) -> str:
    if isinstance(v, tuple):
        return "[" + ",".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _sort_key(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def aggregate(
    runs: Sequence[RunRecord], by: Sequence[str] | None = None, metrics: Sequence[str] | None = None
) -> tuple[list[str], list[str], list[GroupStats]]:
    """Group ``runs`` by the ``by`` keys (default :func:`varying_keys`) -> (by, metrics, groups)."""
    if not runs:
        raise ValueError("no evaluated runs to aggregate")
    by = list(by) if by else varying_keys(runs)
    for key in by:
        if all(key not in r.config for r in runs):
            raise KeyError(f"no run has config key '{key}'; keys look like model.beta or seed")
    metric_keys = select_metrics(runs, metrics)
    groups: dict[tuple, GroupStats] = {}
    for run in runs:
        setting = {k: run.config.get(k) for k in by}
        ident = tuple(repr(setting[k]) for k in by)
        group = groups.setdefault(ident, GroupStats(setting))
        group.runs.append(str(run.path))
        for m in metric_keys:
            if m in run.scores:
                group.values.setdefault(m, []).append(run.scores[m])
    ordered = sorted(groups.values(), key=lambda g: tuple(_sort_key(g.setting[k]) for k in by))
    for group in ordered:
        for m in metric_keys:
            group.stats[m] = mean_std(group.values.get(m, []))
    return by, metric_keys, ordered


def _cell(stat: tuple[float, float, int], digits: int = 3) -> str:
    mean, std, n = stat
    if n == 0:
        return "—"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(by: Sequence[str], metrics: Sequence[str], groups: Sequence[GroupStats]) -> str:
    """Rows = settings, columns = metrics as ``mean ± std``, plus n (runs per setting)."""
    header = [*by, "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        counts = {g.stats[m][2] for m in metrics}
        n = str(max(counts)) if len(counts) == 1 else "/".join(str(g.stats[m][2]) for m in metrics)
        row = [_fmt_value(g.setting[k]) for k in by] + [n] + [_cell(g.stats[m]) for m in metrics]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def to_csv(by: Sequence[str], metrics: Sequence[str], groups: Sequence[GroupStats]) -> str:
    """Long format: one line per (setting, metric) with mean, std (empty when n < 2) and n."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*by, "metric", "mean", "std", "n"])
    for g in groups:
        for m in metrics:
            mean, std, n = g.stats[m]
            writer.writerow([_fmt_value(g.setting[k]) for k in by] + [
                m, "" if n == 0 else repr(mean), "" if n < 2 else repr(std), n])
    return buf.getvalue()


def to_json(by: Sequence[str], metrics: Sequence[str], groups: Sequence[GroupStats]) -> str:
    def num(x: float) -> float | None:
        return None if not math.isfinite(x) else x

    payload = {
        "by": list(by),
        "metrics": list(metrics),
        "std": "sample standard deviation (ddof=1); null when n < 2",
        "groups": [
            {
                "setting": {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.setting.items()},
                "runs": g.runs,
                "stats": {m: {"mean": num(g.stats[m][0]), "std": num(g.stats[m][1]),
                              "n": g.stats[m][2], "values": g.values.get(m, [])} for m in metrics},
            }
            for g in groups
        ],
    }
    return json.dumps(payload, indent=2)


def _numeric(values: Iterable[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def write_plots(
    by: Sequence[str], metrics: Sequence[str], groups: Sequence[GroupStats], out_dir: Path,
    x: str | None = None, violin_by: str | None = None,
) -> list[Path]:
    """Per metric: metric vs a numeric hyperparameter ``x`` with error bars (one line per value of
    the other ``by`` keys), and a violin/box plot of the per-run values per setting (or per
    ``violin_by`` value, e.g. ``model.name``)."""
    from disentkit.viz.plots import plot_metric_vs_param, plot_violin

    out_dir = Path(out_dir)
    paths: list[Path] = []
    if x is None:
        x = next((k for k in by if _numeric(g.setting[k] for g in groups)), None)
    for m in metrics:
        safe = m.replace("/", "_")
        if x is not None and x in by and _numeric(g.setting[x] for g in groups):
            series: dict[str, list[tuple[float, float, float, int]]] = {}
            for g in groups:
                mean, std, n = g.stats[m]
                if n == 0:
                    continue
                label = ", ".join(f"{k}={_fmt_value(v)}" for k, v in g.setting.items() if k != x)
                series.setdefault(label, []).append((float(g.setting[x]), mean, std, n))
            if series:
                paths.append(plot_metric_vs_param(series, out_dir / f"{safe}_vs_{x}.png", x, m))
        buckets: dict[str, list[float]] = {}
        for g in groups:
            key = _fmt_value(g.setting[violin_by]) if violin_by in g.setting else g.label()
            buckets.setdefault(key, []).extend(g.values.get(m, []))
        buckets = {k: v for k, v in buckets.items() if v}
        if buckets:
            paths.append(plot_violin(buckets, out_dir / f"{safe}_violin.png", m, violin_by or
                                     (", ".join(by) or "setting")))
    return paths


def write_outputs(
    by: Sequence[str], metrics: Sequence[str], groups: Sequence[GroupStats], out_dir: Path,
    plots: bool = True, x: str | None = None, violin_by: str | None = None,
) -> list[Path]:
    """``summary.md``, ``summary.csv``, ``summary.json`` (+ plots) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("summary.md", to_markdown(by, metrics, groups)),
                       ("summary.csv", to_csv(by, metrics, groups)),
                       ("summary.json", to_json(by, metrics, groups))):
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    if plots:
        written += write_plots(by, metrics, groups, out_dir, x=x, violin_by=violin_by)
    return written
