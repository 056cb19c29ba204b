"""Find and compare runs: the logic behind ``disentkit runs`` and ``disentkit compare``.

A run folder is any folder holding ``config.yaml`` (found like :mod:`disentkit.experiments.aggregate`
does); beside it ``summary.json`` (``status``, ``step``, ``steps``, written by the trainer) and
``results.json`` (``{"metrics": {name: {key: value}}}``, written by ``disentkit eval``). Files are
read with ``yaml.safe_load`` / ``json`` only, so no file content can run code, and a broken or
foreign folder becomes a row saying so instead of an error.

* :func:`list_runs` -> one row (a flat dict) per run: run, status, method, dataset, seed, step,
  steps and each metric's headline score (``mig``, ``dci``, ...); :func:`sort_rows`,
  :func:`format_runs` print them.
* :func:`compare_runs` -> the flattened config keys whose values differ between the runs and every
  scalar score of any run, side by side; :func:`format_comparison` prints them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from disentkit.errors import UserError
from disentkit.experiments.aggregate import find_run_dirs
from disentkit.viz.report import flatten_leaves, flatten_metrics

__all__ = [
    "Comparison",
    "RunFiles",
    "compare_runs",
    "format_comparison",
    "format_runs",
    "list_runs",
    "read_run",
    "row_notes",
    "run_row",
    "sort_keys",
    "sort_rows",
]

#: the fixed columns of ``disentkit runs``, before the headline metrics
BASE_COLUMNS = ("run", "status", "method", "dataset", "seed", "step")
#: files larger than this are not parsed (a run's yaml/json files are a few KiB)
MAX_FILE_BYTES = 8 * 1024 * 1024
#: widest table cell; longer values are cut with an ellipsis
MAX_CELL = 48


class RunsError(UserError, ValueError):
    """A ``disentkit runs`` / ``compare`` argument that names no runs, or an unknown sort key."""


# --------------------------------------------------------------------------------------------
# Reading one run folder
# --------------------------------------------------------------------------------------------
@dataclass
class RunFiles:
    """The parsed files of one run folder; ``None`` where a file is missing or unreadable, with
    the reason in ``problems`` (``{"config.yaml": "not valid YAML (...)"}``)."""

    path: Path
    config: dict[str, Any] | None
    summary: dict[str, Any] | None
    results: dict[str, Any] | None
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        """Every scalar score of ``results.json`` (``{"mig.discrete_mig": 0.31, ...}``)."""
        metrics = (self.results or {}).get("metrics")
        return flatten_metrics(metrics) if isinstance(metrics, dict) else {}


def _short(text: str, limit: int = 160) -> str:
    """``text`` on one line, at most ``limit`` characters (messages stay one bounded line)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _read_mapping(path: Path, kind: str) -> tuple[dict[str, Any] | None, str]:
    """(the mapping in ``path``, "") or (None, why not): missing, too large, unparsable, or not a
    mapping. ``kind`` is ``"yaml"`` or ``"json"``."""
    try:
        if not path.is_file():
            return None, "missing"
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"{size} bytes, larger than a run's {path.name} can be"
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if kind == "yaml" else json.loads(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as err:
        return None, _short(f"cannot be read ({type(err).__name__}: {err})")
    if not isinstance(data, dict):
        return None, f"holds a {type(data).__name__}, not a mapping"
    return data, ""


def read_run(run_dir: str | Path) -> RunFiles:
    """Parse ``config.yaml``, ``summary.json`` and ``results.json`` of ``run_dir`` (never raises for
    bad content: each unreadable file is ``None`` with its reason in ``problems``)."""
    run_dir = Path(run_dir)
    parsed, problems = {}, {}
    for name, kind in (("config.yaml", "yaml"), ("summary.json", "json"), ("results.json", "json")):
        parsed[name], why = _read_mapping(run_dir / name, kind)
        if why:
            problems[name] = why
    return RunFiles(run_dir, parsed["config.yaml"], parsed["summary.json"], parsed["results.json"],
                    problems)


def _status(files: RunFiles) -> tuple[str, str]:
    """(status, detail) of a run: ``finished``, ``running`` (a live process holds its lock),
    ``trained`` (finished training, its results.json / report.html still missing), ``failed``,
    ``interrupted``, ``killed`` (summary.json says running but no live process holds the run),
    ``unreadable`` (config.yaml) or ``unknown`` (no readable summary.json)."""
    from disentkit.experiments.sweep import run_status

    if files.config is None:
        return "unreadable", f"config.yaml {files.problems.get('config.yaml', '')}"
    try:
        judged = run_status(files.path)
    except (OSError, ValueError, TypeError, AttributeError) as err:  # a foreign config or lock
        return "unknown", _short(f"{type(err).__name__}: {err}")
    if judged.state in ("running", "finished"):
        return judged.state, judged.detail
    if files.summary is None:
        return "unknown", f"summary.json {files.problems.get('summary.json', '')}"
    written = files.summary.get("status")
    if written == "finished":
        return "trained", judged.detail
    if written == "running":
        return "killed", "summary.json says running, but no live process holds the run"
    if written in ("failed", "interrupted"):
        return written, _short(str(files.summary.get("error", "")))
    return "unknown", _short(f"summary.json says status {written!r}")


def _section_name(config: dict[str, Any] | None, section: str) -> Any:
    value = (config or {}).get(section)
    return value.get("name") if isinstance(value, dict) else None


def _whole(value: Any) -> int | None:
    """``value`` if it is a whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def headline_of(scores: dict[str, float]) -> dict[str, float]:
    """{metric: its headline score} (``mig`` -> ``mig.discrete_mig``) from flattened scores."""
    from disentkit.evaluation import HEADLINE

    return {name: scores[f"{name}.{key}"] for name, key in HEADLINE.items()
            if f"{name}.{key}" in scores}


def _progress(files: RunFiles) -> dict[str, int | None]:
    """{"step": summary.json's step, "steps": its steps, else the config's train.steps}."""
    summary, config = files.summary or {}, files.config or {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    steps = _whole(summary.get("steps"))
    return {"step": _whole(summary.get("step")),
            "steps": steps if steps is not None else _whole(train.get("steps"))}


def run_row(run_dir: str | Path, root: str | Path) -> dict[str, Any]:
    """One ``disentkit runs`` row: run (path relative to ``root``), status, method, dataset, seed,
    step, steps, path, detail and each headline metric present."""
    files = read_run(run_dir)
    status, detail = _status(files)
    config = files.config or {}
    row: dict[str, Any] = {
        "run": _relative(Path(run_dir).resolve(), Path(root).resolve()),
        "status": status,
        "method": _section_name(files.config, "model"),
        "dataset": _section_name(files.config, "data"),
        "seed": config.get("seed"),
        **_progress(files),
    }
    row.update(headline_of(files.scores))
    row.update(path=str(Path(run_dir).resolve()), detail=detail)
    return row


def _existing_folder(path: Path) -> Path:
    if not path.exists():
        raise RunsError(f"{path} does not exist; give the folder that holds your runs "
                        "(the out_dir of disentkit train, runs by default)")
    if not path.is_dir():
        raise RunsError(f"{path} is a file; give a folder of run folders")
    return path


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """A row (see :func:`run_row`) for every run folder at or below ``root``, sorted by path."""
    root = _existing_folder(Path(root))
    return [run_row(run_dir, root) for run_dir in find_run_dirs([root])]


# --------------------------------------------------------------------------------------------
# Sorting and printing the runs table
# --------------------------------------------------------------------------------------------
def metric_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The headline metrics present in any row, in the order of the HEADLINE map."""
    from disentkit.evaluation import HEADLINE

    present = {key for row in rows for key in row}
    return [name for name in HEADLINE if name in present]


def sort_keys() -> list[str]:
    """The keys ``--sort`` accepts: the table's columns, ``steps`` and every headline metric."""
    from disentkit.evaluation import HEADLINE

    return [*BASE_COLUMNS, "steps", *[m for m in HEADLINE if m not in BASE_COLUMNS]]


def _order(value: Any) -> tuple:
    """Numbers before text, numerically; missing values are handled by :func:`sort_rows`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def sort_rows(rows: Sequence[dict[str, Any]], key: str | None, reverse: bool = False
              ) -> list[dict[str, Any]]:
    """``rows`` sorted by ``key`` (``-key``: descending), numerically where the values are
    numbers; rows without a value (or a NaN score) come last either way. Ties keep run order."""
    if not key:
        return sorted(rows, key=lambda r: r["run"], reverse=reverse)
    if key.startswith("-"):
        key, reverse = key[1:], not reverse
    allowed = sort_keys()
    if key not in allowed:
        raise RunsError(f"unknown sort key {_short(repr(key), 60)}; sort by one of "
                        f"{', '.join(allowed)} (prefix - or add --reverse for descending)")

    def missing(row: dict[str, Any]) -> bool:
        value = row.get(key)
        return value is None or (isinstance(value, float) and math.isnan(value))

    present = sorted((r for r in rows if not missing(r)), key=lambda r: _order(r[key]),
                     reverse=reverse)
    return present + [r for r in rows if missing(r)]


def _cell(value: Any, digits: int | None = 3) -> str:
    """A table cell: floats with ``digits`` decimals (None: shortest form, for config values such
    as 1e-05), missing as ``-``, one line, ``|`` escaped, at most :data:`MAX_CELL` characters."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.{digits}f}" if digits is not None and math.isfinite(value) else f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_cell(v, digits) for v in value) + "]"
    else:
        text = str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns are padded to line up in plain text too."""
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in body)]) + "\n"


def _step_cell(row: dict[str, Any]) -> str:
    if row.get("step") is None and row.get("steps") is None:
        return "-"
    return f"{_cell(row.get('step'))}/{_cell(row.get('steps'))}"


def format_runs(rows: Sequence[dict[str, Any]]) -> str:
    """The ``disentkit runs`` table: the base columns (step as ``step/steps``) and the headline
    metrics present in any row."""
    metrics = metric_columns(rows)
    body = []
    for row in rows:
        cells = [_step_cell(row) if c == "step" else _cell(row.get(c)) for c in BASE_COLUMNS]
        body.append(cells + [_cell(row.get(m)) for m in metrics])
    return markdown_table([*BASE_COLUMNS, *metrics], body)


def row_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``note: RUN: why`` for each unreadable or unknown run (the table only names the status)."""
    return [f"note: {r['run']}: {r['status']}: {r['detail']}" for r in rows
            if r["status"] in ("unreadable", "unknown") and r.get("detail")]


def _json_value(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (json.dumps would write the invalid NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # a YAML date or other scalar without a JSON form


def to_json(payload: Any) -> str:
    """``payload`` as strict JSON (NaN -> null)."""
    return json.dumps(_json_value(payload), indent=2, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Comparing runs
# --------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Runs side by side: ``labels[i]`` names ``paths[i]``; ``config[key][i]`` is run i's value of
    a flattened config key whose values differ (None: the key is absent); ``scores[key][i]`` its
    score (None: not scored). ``headline`` lists the score keys that are headline numbers."""

    labels: list[str]
    paths: list[str]
    status: list[str]
    step: list[str]
    config: dict[str, list[Any]]
    scores: dict[str, list[float | None]]
    headline: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [{"label": lab, "path": p, "status": s, "step": st}
                         for lab, p, s, st in zip(self.labels, self.paths, self.status, self.step)],
                "config": self.config, "scores": self.scores, "headline": self.headline}


def _load_for_compare(path: Path) -> RunFiles:
    """The run at ``path``, or a :class:`RunsError` saying why it cannot be compared."""
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is a file"
        raise RunsError(f"{path} {what}; give run folders (each holding config.yaml); "
                        "list them with disentkit runs DIR")
    if not (path / "config.yaml").is_file():
        raise RunsError(f"{path} is not a run folder (no config.yaml in it); give run folders "
                        "written by disentkit train; list them with disentkit runs DIR")
    files = read_run(path)
    if files.config is None:
        raise RunsError(f"{path}/config.yaml {files.problems['config.yaml']}; a run's config.yaml "
                        "is a YAML mapping: restore it, or leave that run out")
    return files


def _labels(paths: Sequence[Path]) -> list[str]:
    """Column headers: the folder names when they are unique, else the paths as given."""
    names = [p.resolve().name or str(p) for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _differing(configs: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """{flattened key: [value per run]} for the keys whose values are not all equal."""
    flat = [flatten_leaves(c) for c in configs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    missing = object()
    out = {}
    for key in keys:
        values = [f.get(key, missing) for f in flat]
        if len({repr(v) for v in values}) > 1:
            out[key] = [None if v is missing else v for v in values]
    return out


def _score_keys(all_scores: Sequence[dict[str, float]]) -> tuple[list[str], list[str]]:
    """(every score key of any run, grouped by metric with its headline key first; headlines)."""
    from disentkit.evaluation import HEADLINE

    keys: list[str] = []
    for scores in all_scores:
        keys += [k for k in scores if k not in keys]
    metrics: list[str] = []
    for key in keys:
        metric = key.split(".", 1)[0]
        if metric not in metrics:
            metrics.append(metric)
    ordered, headline = [], []
    for metric in metrics:
        head = f"{metric}.{HEADLINE[metric]}" if metric in HEADLINE else None
        if head in keys:
            ordered.append(head)
            headline.append(head)
        ordered += [k for k in keys if k.split(".", 1)[0] == metric and k != head]
    return ordered, headline


def compare_runs(paths: Sequence[str | Path]) -> Comparison:
    """Put two or more runs side by side: the config keys that differ and every score.

    Raises :class:`RunsError` for fewer than two runs, a path that is not a run folder or an
    unreadable config.yaml; a run without results.json simply has no scores."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise RunsError(f"compare needs at least 2 run folders, got {len(paths)}; give two or "
                        "more: disentkit compare RUN RUN ...")
    runs = [_load_for_compare(p) for p in paths]
    all_scores = [r.scores for r in runs]
    keys, headline = _score_keys(all_scores)
    return Comparison(
        labels=_labels(paths),
        paths=[str(p) for p in paths],
        status=[_status(r)[0] for r in runs],
        step=[_step_cell(_progress(r)) for r in runs],
        config=_differing([r.config or {} for r in runs]),
        scores={k: [s.get(k) for s in all_scores] for k in keys},
        headline=headline,
    )


def format_comparison(comparison: Comparison) -> str:
    """Two Markdown-style tables (config differences, then scores; headline scores marked ``*``),
    with a line instead of a table when there is nothing to show."""
    labels = comparison.labels
    parts = [markdown_table(["run", *labels], [["status", *(_cell(s) for s in comparison.status)],
                                               ["step", *comparison.step]])]
    if comparison.config:
        body = [[key, *(_cell(v, None) for v in values)] for key, values in comparison.config.items()]
        parts.append(markdown_table(["config", *labels], body))
    else:
        parts.append("The configs are identical.\n")
    if comparison.scores:
        body = [[key + (" *" if key in comparison.headline else ""), *(_cell(v, 4) for v in values)]
                for key, values in comparison.scores.items()]
        parts.append(markdown_table(["score", *labels], body))
        if comparison.headline:
            parts.append("* the metric's headline score\n")
    else:
        parts.append("No run has scores yet (results.json); evaluate them with disentkit eval RUN.\n")
    return "\n".join(parts)
