"""One self-contained HTML page per run: ``write_report(run_dir) -> run_dir/report.html``.

Sections (each one optional, so a report can be written for a run that is still training, has
no ``results.json`` yet, no checkpoint, or a dataset without ground-truth factors): status and
config, training curves from ``metrics.jsonl``, reconstructions, latent traversals (four modes,
GIFs), true-factor traversals and the code response, the metric table from ``results.json`` and
the code/factor MI matrix as a heat map. Every image is inlined as a base64 ``data:`` URI, so the
page opens from disk with no server; the image files are also kept in ``report_files/``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReportOptions", "flatten_leaves", "flatten_metrics", "mi_from_results", "write_report"]

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class ReportOptions:
    num_images: int = 8
    limit: float = 3.0
    steps: int = 10
    order: str = "factor"
    max_latents: int | None = 16
    #: samples for the MI matrix when results.json has none
    mi_points: int = 4000
    seed: int = 0
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)


def _data_uri(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(path: Path, alt: str) -> str:
    return f'<figure><img src="{_data_uri(path)}" alt="{html.escape(alt)}"><figcaption>' \
           f"{html.escape(alt)}</figcaption></figure>"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def flatten_leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of nested dicts under its dotted key (``{"model.beta": 4, ...}``); values that
    are not dicts (lists and strings too) are leaves."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(flatten_leaves(value, name))
            else:
                out[name] = value
    return out


def flatten_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Scalar leaves of a nested results dict as ``{"mig.discrete_mig": 0.31, ...}`` (lists and
    matrices such as MIG's MI matrix are left out)."""
    return {name: float(value) for name, value in flatten_leaves(metrics, prefix).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def mi_from_results(results: Any) -> np.ndarray | None:
    """Normalised MI matrix (D, K) from MIG's entry in ``results.json`` (``mutual_info`` divided
    by ``factor_entropy``), or None when the run has no MIG result."""
    try:
        mig = results["metrics"]["mig"]
        mi = np.asarray(mig["mutual_info"], dtype=np.float64)
        entropy = np.asarray(mig["factor_entropy"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if mi.ndim != 2 or entropy.shape != (mi.shape[1],):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(entropy[None, :] > 0, mi / entropy[None, :], 0.0)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f0f0f0}td.num{text-align:right;font-family:monospace}
figure{display:inline-block;margin:.4em .8em .8em 0;vertical-align:top}
figcaption{font-size:.8em;color:#555}img{max-width:100%;image-rendering:pixelated}
.note{color:#8a5a00;font-size:.9em}
"""


class _Page:
    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def add(self, raw_html: str) -> None:
        self.parts.append(raw_html)

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def render(self) -> str:
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>" + "\n".join(self.parts) + "</body></html>\n"
        )


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=\"num\">{html.escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table><tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>{body}</table>"


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def _section(page: _Page, name: str, fn) -> None:
    """Run one section; a failure becomes a note on the page instead of losing the report."""
    from disentkit.progress import say

    say(f"report: {name} ...")
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the report must survive any missing piece
        page.note(f"{name}: not available ({type(err).__name__}: {err})")
        if not isinstance(err, (FileNotFoundError, ValueError, TypeError, KeyError)):
            traceback.print_exc()


def write_report(run_dir: str | Path, out: str | Path | None = None, **options: Any) -> Path:
    """Write ``report.html`` for a run directory (or ``out``) and return its path.

    ``options`` are :class:`ReportOptions` fields. Missing pieces (no results, no checkpoint,
    no ground truth, an image-only dataset) are reported on the page, never raised.
    """
    opts = ReportOptions(**options)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    out_path = Path(out) if out else run_dir / "report.html"
    files = out_path.parent / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    summary = _read_json(run_dir / "summary.json") or {}
    results = _read_json(run_dir / "results.json")
    page = _Page(f"disentkit run: {run_dir.name}")
    state: dict[str, Any] = {}

    # ---- status and config -------------------------------------------------------------------
    status = [(k, str(v)) for k, v in summary.items() if not isinstance(v, (dict, list))]
    page.add(_table(status, ("summary", "value")) if status else "")
    if not summary:
        page.note("no summary.json: the run has not started or is not a disentkit run directory")
    page.h2("Config")
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        page.add(f"<pre>{html.escape(config_path.read_text())}</pre>")
    else:
        page.note("no config.yaml")

    # ---- training curves --------------------------------------------------------------------
    page.h2("Training curves")

    def curves() -> None:
        from disentkit.viz.plots import plot_training_curves, read_metrics_jsonl

        rows = read_metrics_jsonl(run_dir / "metrics.jsonl")
        page.add(_img(plot_training_curves(rows, files / "curves.png"), "logged terms vs step"))

    _section(page, "training curves", curves)

    # ---- metrics ----------------------------------------------------------------------------
    page.h2("Metrics")
    if results is None:
        page.note("no results.json yet (run `disentkit eval RUN_DIR`)")
    else:
        flat = flatten_metrics(results.get("metrics", {}))
        page.add(_table([(k, _fmt(v)) for k, v in flat.items()], ("metric", "score")))
        state["mi"] = mi_from_results(results)

    # ---- model-based sections ---------------------------------------------------------------
    def load() -> None:
        from disentkit.api import load_run

        run = load_run(run_dir, device=opts.device)
        state["run"] = run
        state["data"] = run.data()

    _section(page, "model", load)
    model = state.get("run").model if "run" in state else None
    data = state.get("data")
    has_factors = data is not None and hasattr(data, "factor_sizes") and len(data.factor_sizes) > 0
    factor_names = list(data.factor_names) if has_factors else None

    page.h2("Reconstructions")

    def recon() -> None:
        from disentkit.viz.images import data_batch
        from disentkit.viz.latents import sample_indices
        from disentkit.viz.reconstruction import write_reconstructions

        if model is None or data is None:
            raise ValueError("needs the trained model and its dataset")
        idx = sample_indices(len(data), opts.num_images, opts.seed)
        path = write_reconstructions(model, data_batch(data, idx), files / "reconstructions.png")
        page.add(_img(path, "top: originals, bottom: reconstructions"))

    _section(page, "reconstructions", recon)

    page.h2("Mutual information between codes and factors")

    def mi_section() -> None:
        from disentkit.viz.latents import mi_matrix
        from disentkit.viz.plots import plot_mi_matrix

        if state.get("mi") is None:
            if not has_factors:
                raise ValueError("the dataset has no ground-truth factors")
            if model is None:
                raise ValueError("no results.json MIG entry and no model to compute it")
            state["mi"] = mi_matrix(model, data, num_points=opts.mi_points, seed=opts.seed)
            page.note(f"estimated here from {opts.mi_points} samples (MIG's estimator)")
        else:
            page.note("from MIG's entry in results.json")
        page.add(_img(plot_mi_matrix(state["mi"], files / "mi_matrix.png", factor_names),
                      "rows: latents, columns: factors"))

    _section(page, "MI matrix", mi_section)

    page.h2("Latent traversals")

    def traversals() -> None:
        from disentkit.viz.latents import activity_from_data, order_latents
        from disentkit.viz.traversal import MODES, range_values, write_traversals

        if model is None:
            raise ValueError("needs the trained model")
        activity, kind = activity_from_data(model, data, seed=opts.seed) if data is not None \
            else (None, "KL")
        order = order_latents(
            int(model.latent_dim), opts.order, activity=activity, activity_kind=kind,
            mi=state.get("mi"), factor_names=factor_names, max_latents=opts.max_latents,
        )
        for text in order.notes:
            page.note(text)
        modes = MODES if data is not None else ("zero", "prior")
        written = write_traversals(
            model, files / "traversals", order, data=data, modes=modes,
            values=range_values(opts.limit, opts.steps), num_fixed=1, num_prior=1, seed=opts.seed,
        )
        page.note(f"values {-opts.limit:+g} .. {opts.limit:+g} in {opts.steps} steps; "
                  f"rows ordered by {order.criterion}")
        for mode, paths in written.items():
            page.add(_img(paths[0], f"{mode}: one row per latent, one column per value"))
            if paths[-1].suffix == ".gif":
                page.add(_img(paths[-1], f"{mode} (animated)"))

    _section(page, "traversals", traversals)

    if has_factors:
        page.h2("True-factor traversals")

        def factors() -> None:
            from disentkit.viz.factors import write_factor_traversals

            if model is None:
                raise ValueError("needs the trained model")
            paths = write_factor_traversals(model, data, files, seed=opts.seed)
            page.add(_img(paths["images"], "one row per factor, the others held fixed"))
            page.add(_img(paths["response"], "each latent's code vs the factor value (mean ± std)"))

        _section(page, "true-factor traversals", factors)

    for text in opts.notes:
        page.note(text)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(page.render(), encoding="utf-8")
    tmp.replace(out_path)
    return out_path
