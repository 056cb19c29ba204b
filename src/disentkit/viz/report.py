"""One self-contained HTML page per run: ``write_report(run_dir) -> run_dir/report.html``.

The page answers "did it work?" first: a headline block (method, dataset, seed, steps, wall time,
the headline metrics and per-factor MIG), then the latent traversals (the three fixed images of
``disentkit traverse``, a random image, the zero vector, a prior sample; GIFs folded away), the
code/factor MI heat map, true-factor traversals and the code response, reconstructions, training
curves (constant series as a line of text), every metric score with its settings, and the config
collapsed at the end. Collapsed latents (KL ~ 0) are greyed out with their KL wherever they
appear. Each section is optional, so a report can be written for a run that is still training,
has no ``results.json`` yet, no checkpoint, or a dataset without ground-truth factors. Every image
is inlined as a base64 ``data:`` URI, so the page opens from disk with no server; the image files
are also kept in ``report_files/``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReportOptions", "flatten_leaves", "flatten_metrics", "mi_from_results", "per_factor_mig",
           "write_report"]

_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class ReportOptions:
    num_images: int = 8
    limit: float = 3.0
    steps: int = 10
    order: str = "factor"
    max_latents: int | None = 16
    #: fixed-image traversals (the middle of each third of the dataset, as `disentkit traverse`)
    num_fixed: int = 3
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


def _metric_protocol(results: Any, name: str) -> str | None:
    """The protocol a metric of ``results.json`` was scored under (its entry, or the file's
    config in the layout without entries)."""
    entry = (results.get("entries") or {}).get(name) if isinstance(results, dict) else None
    if isinstance(entry, dict) and entry.get("protocol"):
        return str(entry["protocol"])
    config = results.get("config") if isinstance(results, dict) else None
    return str(config.get("protocol")) if isinstance(config, dict) and config.get("protocol") else None


def mi_from_results(results: Any) -> np.ndarray | None:
    """Normalised MI matrix (D, K) from MIG's entry in ``results.json`` (``mutual_info`` divided
    by ``factor_entropy``), or None when the run has no MIG result or MIG scored code groups
    (``--protocol fdae|disdiff``: one row per group, not per latent)."""
    try:
        mig = results["metrics"]["mig"]
        mi = np.asarray(mig["mutual_info"], dtype=np.float64)
        entropy = np.asarray(mig["factor_entropy"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if _metric_protocol(results, "mig") not in (None, "dlib"):
        return None
    if mi.ndim != 2 or entropy.shape != (mi.shape[1],):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(entropy[None, :] > 0, mi / entropy[None, :], 0.0)


def per_factor_mig(mi: np.ndarray) -> list[tuple[float, int, int | None]]:
    """Per factor of a normalised MI matrix (D, K): ``(gap, top latent, runner-up)``, the gap
    between the two largest I(z_i; v_k) / H(v_k) of its column (MIG averages these gaps)."""
    out = []
    for column in np.asarray(mi, dtype=np.float64).T:
        order = np.argsort(-column, kind="stable")
        second = int(order[1]) if len(order) > 1 else None
        gap = float(column[order[0]] - (column[second] if second is not None else 0.0))
        out.append((gap, int(order[0]), second))
    return out


#: a latent whose KL(q(z|x) || p(z)) averaged over images is below this (nats) is collapsed
COLLAPSED_KL = 0.01

#: the page's sections in order: the answer to "did it work?" first, the config last
SECTIONS = (
    ("headline", "Headline"),
    ("traversals", "Latent traversals"),
    ("mi", "Mutual information between codes and factors"),
    ("factors", "True-factor traversals"),
    ("reconstructions", "Reconstructions"),
    ("autoencoder", "Code layout and counterfactuals"),
    ("samples", "Samples"),
    ("swaps", "Code swaps"),
    ("masks", "Concept masks"),
    ("pca", "Content codes along their first PCA direction"),
    ("curves", "Training curves"),
    ("metrics", "Metrics"),
    ("config", "Config"),
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1em;margin:1em 0 .3em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.9em;margin:.3em 1.5em .6em 0}
td,th{border:1px solid #ccc;padding:.25em .6em}
th{background:#f0f0f0;text-align:left}td.num{text-align:right;font-family:monospace}
figure{display:inline-block;margin:.4em .8em .8em 0;vertical-align:top}
.pairs{display:flex;flex-wrap:wrap;gap:0 1%}.pairs figure{max-width:49%;margin:.4em 0 .8em}
figcaption{font-size:.8em;color:#555}img{max-width:100%;image-rendering:pixelated}
.note{color:#8a5a00;font-size:.9em}.constants{font-family:monospace;font-size:.9em}
#headline{background:#f7f9fc;border:1px solid #dde3ee;padding:.2em 1em .8em}
#headline .tables{display:flex;flex-wrap:wrap;align-items:flex-start}
.collapsed{color:#999;font-size:.9em}summary{cursor:pointer;color:#245}
"""


class _Page:
    """The page as named blocks (:data:`SECTIONS`) that can be filled in any order."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: dict[str, list[str]] = {key: [] for key, _ in SECTIONS}

    def add(self, block: str, raw_html: str) -> None:
        self.blocks[block].append(raw_html)

    def note(self, block: str, text: str) -> None:
        self.blocks[block].append(f'<p class="note">{html.escape(text)}</p>')

    def render(self) -> str:
        sections = [
            f'<section id="{key}"><h2>{html.escape(heading)}</h2>' + "\n".join(self.blocks[key])
            + "</section>"
            for key, heading in SECTIONS if self.blocks[key] or key == "headline"
        ]
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>" + "\n".join(sections) + "</body></html>\n"
        )


def _class(name: str) -> str:
    return f' class="{html.escape(name)}"' if name else ""


def _cells(row: Sequence[str], tag: str = "td", classes: Sequence[str] = ()) -> str:
    padded = list(classes) + [""] * (len(row) - len(classes))
    return "".join(f"<{tag}{_class(c)}>{html.escape(v)}</{tag}>" for v, c in zip(row, padded))


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "",
          num_cols: Sequence[int] = (), row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; columns in ``num_cols`` are right-aligned numbers."""
    classes = ["num" if i in num_cols else "" for i in range(len(header))]
    body = "".join(f"<tr{_class(rc)}>{_cells(row, 'td', classes)}</tr>"
                   for row, rc in zip(rows, row_classes or [""] * len(rows)))
    return f"<table{_class(cls)}><tr>{_cells(header, 'th')}</tr>{body}</table>"


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    return _grid(header, rows, num_cols=(1,))


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        return "not recorded"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _settings(entry: Any) -> str:
    """``"dlib, fast, seed 0, step 1000"`` for a results.json entry."""
    if not isinstance(entry, dict):
        return ""
    parts = [str(entry[k]) for k in ("protocol", "preset") if entry.get(k) is not None]
    if entry.get("representation") not in (None, "mean"):
        parts.append(f"{entry['representation']} codes")
    parts += [f"{k} {entry[k]}" for k in ("seed", "step") if entry.get(k) is not None]
    return ", ".join(parts)


def _section(page: _Page, block: str, name: str, fn) -> None:
    """Run one section; a failure becomes a note on the page instead of losing the report."""
    from disentkit.progress import say

    say(f"report: {name} ...")
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the report must survive any missing piece
        page.note(block, f"{name}: not available ({type(err).__name__}: {str(err)[:300]})")
        if not isinstance(err, (FileNotFoundError, ValueError, TypeError, KeyError)):
            traceback.print_exc()


@dataclass
class _Run:
    """What the report knows about a run (each piece None when it is missing)."""

    path: Path
    files: Path
    opts: ReportOptions
    summary: dict[str, Any]
    config: dict[str, Any]
    results: dict[str, Any] | None
    model: Any = None
    data: Any = None
    #: per-latent activity for the row order: KL, or code variance without a Gaussian posterior
    activity: tuple[np.ndarray, str] | None = None
    kl: np.ndarray | None = None
    mi: np.ndarray | None = None
    mi_source: str = ""
    collapsed: list[int] = field(default_factory=list)

    @property
    def factor_names(self) -> list[str] | None:
        has = self.data is not None and len(getattr(self.data, "factor_sizes", ())) > 0
        return list(self.data.factor_names) if has else None


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _load(page: _Page, run: _Run) -> None:
    """The model and data, the per-latent KL (collapsed latents) and the MI matrix."""
    from disentkit.run_loading import load_run

    def model() -> None:
        loaded = load_run(run.path, device=run.opts.device)
        run.model, run.data = loaded.model, loaded.data()

    _section(page, "headline", "model", model)
    if not _has_code(run):
        return
    if run.model is not None and run.data is not None:
        _section(page, "traversals", "per-latent KL", lambda: _measure_kl(run))
    mi = mi_from_results(run.results) if run.results else None
    latent_dim = int(getattr(run.model, "latent_dim", 0) or 0) if run.model is not None else None
    if mi is not None and (latent_dim is None or mi.shape[0] == latent_dim):
        run.mi, run.mi_source = mi, "from MIG's entry in results.json"
    elif run.factor_names and run.model is not None:
        _section(page, "mi", "MI matrix", lambda: _estimate_mi(run))


def _has_code(run: _Run) -> bool:
    """False for a model that learns no code (a pixel DDPM): no traversals, MI or metrics."""
    return run.model is None or getattr(run.model, "has_representation", True)


def _measure_kl(run: _Run) -> None:
    from disentkit.viz.latents import activity_from_data

    activity, kind = activity_from_data(run.model, run.data, seed=run.opts.seed)
    run.activity = (np.asarray(activity, dtype=np.float64), kind)
    if kind == "KL":  # code variance (deterministic encoders) says nothing about collapse
        run.kl = np.asarray(activity, dtype=np.float64)
        run.collapsed = [d for d, v in enumerate(run.kl) if v < COLLAPSED_KL]


def _estimate_mi(run: _Run) -> None:
    from disentkit.viz.latents import mi_matrix

    run.mi = mi_matrix(run.model, run.data, num_points=run.opts.mi_points, seed=run.opts.seed)
    run.mi_source = (f"estimated here from {run.opts.mi_points} samples (MIG's estimator; not a "
                     "results.json score)")


def write_report(run_dir: str | Path, out: str | Path | None = None, **options: Any) -> Path:
    """Write ``report.html`` for a run directory (or ``out``) and return its path.

    The page leads with a headline block (method, dataset, seed, steps, wall time, headline
    metrics, per-factor MIG), then traversals, the MI heat map, true-factor traversals,
    reconstructions, samples (all a model that learns no code, a DDPM, gets), training curves,
    every metric score, and the config collapsed at the end.
    ``options`` are :class:`ReportOptions` fields. Missing pieces (no results, no checkpoint,
    no ground truth, an image-only dataset) are reported on the page, never raised.
    """
    from disentkit.evaluation import upgrade_results

    opts = ReportOptions(**options)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    out_path = Path(out) if out else run_dir / "report.html"
    files = out_path.parent / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    summary = _read_json(run_dir / "summary.json")
    results = _read_json(run_dir / "results.json")
    run = _Run(run_dir, files, opts, summary if isinstance(summary, dict) else {},
               _read_config(run_dir / "config.yaml"),
               upgrade_results(results) if isinstance(results, dict) else None)
    page = _Page(f"disentkit run: {run_dir.name}")
    _load(page, run)
    _headline(page, run)
    if _has_code(run):
        _section(page, "traversals", "traversals", lambda: _traversals(page, run))
        _section(page, "mi", "MI matrix", lambda: _mi_section(page, run))
        if run.factor_names:
            _section(page, "factors", "true-factor traversals", lambda: _factors(page, run))
        _section(page, "reconstructions", "reconstructions", lambda: _reconstructions(page, run))
        _section(page, "autoencoder", "code layout and counterfactuals", lambda: _autoencoder(page, run))
    else:
        page.note("samples", f"{run.config.get('model', {}).get('name', 'this model')} learns no "
                             "code: no traversals, MI matrix, reconstructions or metrics")
    _section(page, "samples", "samples", lambda: _samples(page, run))
    if callable(getattr(run.model, "swap_grids", None)):
        _section(page, "swaps", "code swaps", lambda: _swaps(page, run))
    if callable(getattr(run.model, "masks_from_codes", None)):  # FDAE's concept masks
        _section(page, "masks", "concept masks", lambda: _masks(page, run))
        _section(page, "pca", "PCA traversals", lambda: _pca_traversals(page, run))
    _section(page, "curves", "training curves", lambda: _curves(page, run))
    if _has_code(run):
        _metrics(page, run)
    _config(page, run)
    for text in opts.notes:
        page.note("headline", text)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(page.render(), encoding="utf-8")
    tmp.replace(out_path)
    return out_path


# ---- sections -----------------------------------------------------------------------------------

def _headline(page: _Page, run: _Run) -> None:
    """Method, dataset, seed, steps, wall time; the headline metrics; per-factor MIG."""
    summary, config = run.summary, run.config
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    steps = f"{summary.get('step', '?')} of {summary.get('steps', '?')}"
    if summary.get("status"):
        steps += f" ({summary['status']})"
    facts = [
        ("method", str(model.get("name", "?")) + (f", {model['latent_dim']} latents"
                                                  if "latent_dim" in model else "")),
        ("dataset", str(data.get("name", "?"))),
        ("seed", str(config.get("seed", "?"))),
        ("steps", steps if summary else "no summary.json"),
        ("wall time", _duration(summary.get("train_time_s")) + (" (training loop)"
                                                               if "train_time_s" in summary else "")),
    ]
    tables = ['<table class="facts">' + "".join(f"<tr>{_cells((k,), 'th')}{_cells((v,))}</tr>"
                                               for k, v in facts) + "</table>"]
    if run.results is not None:
        tables.append(_headline_metrics(run))
    if run.mi is not None and run.factor_names and run.mi.shape[1] == len(run.factor_names):
        tables.append(_factor_mig(run))
    page.add("headline", '<div class="tables">' + "".join(t for t in tables if t) + "</div>")
    if not summary:
        page.note("headline", "no summary.json: the run has not started or is not a disentkit "
                              "run directory")
    if run.results is None and _has_code(run):
        page.note("headline", "no results.json yet (run `disentkit eval RUN_DIR`)")
    if run.collapsed and run.kl is not None:
        page.note("headline", f"{len(run.collapsed)} of {len(run.kl)} latents are collapsed "
                              f"(KL < {COLLAPSED_KL} nats): " + ", ".join(f"z{d}" for d in run.collapsed))
    _stale_note(page, "headline", run)


def _headline_metrics(run: _Run) -> str:
    from disentkit.evaluation import HEADLINE

    rows = []
    for name, values in (run.results or {}).get("metrics", {}).items():
        key = HEADLINE.get(name)
        if not isinstance(values, dict) or key not in values:
            continue
        entry = run.results.get("entries", {}).get(name)
        rows.append((name, _fmt(float(values[key])), key, _settings(entry)))
    if not rows:
        return ""
    return _grid(("metric", "score", "value", "scored with"), rows, cls="scores", num_cols=(1,))


def _factor_mig(run: _Run) -> str:
    names = run.factor_names or []
    rows, classes = [], []
    for name, (gap, top, second) in zip(names, per_factor_mig(run.mi)):
        label = f"z{top}" + (" (collapsed)" if top in run.collapsed else "")
        rows.append((name, _fmt(gap), label, "" if second is None else f"z{second}"))
        classes.append("collapsed" if top in run.collapsed else "")
    source = "results.json" if run.mi_source.startswith("from") else "estimated here"
    return _grid((f"per-factor MIG ({source})", "MIG", "top latent", "runner-up"), rows,
                 cls="factor-mig", num_cols=(1,), row_classes=classes)


def _stale_note(page: _Page, block: str, run: _Run) -> None:
    """Name the scores of another checkpoint than the run's current one."""
    step = run.summary.get("step")
    stale = [f"{name} (step {entry['step']})"
             for name, entry in (run.results or {}).get("entries", {}).items()
             if isinstance(entry, dict) and entry.get("step") is not None and step is not None
             and entry["step"] != step]
    if stale:
        page.note(block, f"scored on an earlier checkpoint than the run's step {step}: "
                         + ", ".join(stale) + "; re-run `disentkit eval` for current scores")


def _traversals(page: _Page, run: _Run) -> None:
    from disentkit.viz.latents import order_latents
    from disentkit.viz.traversal import (
        MODES,
        fixed_indices,
        mark_collapsed,
        range_values,
        write_traversals,
    )

    opts = run.opts
    if run.model is None:
        raise ValueError("needs the trained model")
    activity, kind = run.activity or (None, "KL")
    order = order_latents(
        int(run.model.latent_dim), opts.order, activity=activity, activity_kind=kind,
        mi=run.mi, factor_names=run.factor_names, max_latents=opts.max_latents,
    )
    order, muted = mark_collapsed(order, run.kl, COLLAPSED_KL)
    for text in order.notes:
        page.note("traversals", text)
    modes = MODES if run.data is not None else ("zero", "prior")
    written = write_traversals(
        run.model, run.files / "traversals", order, data=run.data, modes=modes,
        values=range_values(opts.limit, opts.steps), num_fixed=opts.num_fixed, num_prior=1,
        seed=opts.seed, muted=muted,
    )
    page.note("traversals", f"values {-opts.limit:+g} .. {opts.limit:+g} in {opts.steps} steps; "
                            f"rows ordered by {order.criterion}")
    if muted:
        page.add("traversals", '<p class="collapsed">greyed out: '
                 + html.escape(", ".join(f"z{d} (KL {run.kl[d]:.3f})" for d in muted))
                 + " are collapsed: their posterior is the prior and the decoder ignores them</p>")
    figures, gifs = [], []
    for mode, paths in written.items():
        pngs = [p for p in paths if p.suffix == ".png"]
        gifs += [(mode, p) for p in paths if p.suffix == ".gif"]
        if mode == "fixed":  # the dataset images `disentkit traverse` starts from
            names = [f"fixed image #{i}" for i in fixed_indices(len(run.data), len(pngs))]
        else:
            names = [f"{mode} code" for _ in pngs]
        figures += [_img(p, f"{n}: one row per latent, one column per value")
                    for p, n in zip(pngs, names)]
    page.add("traversals", '<div class="pairs">' + "".join(figures) + "</div>")
    if gifs:
        page.add("traversals", "<details><summary>animated traversals (GIF)</summary>"
                 + "".join(_img(p, f"{mode} (animated)") for mode, p in gifs) + "</details>")


def _mi_section(page: _Page, run: _Run) -> None:
    from disentkit.viz.plots import plot_mi_matrix

    if run.mi is None:
        if not run.factor_names:
            raise ValueError("the dataset has no ground-truth factors")
        raise ValueError("no results.json MIG entry and no model to compute it")
    page.note("mi", run.mi_source)
    rows_are_latents = run.kl is not None and run.mi.shape[0] == len(run.kl)
    path = plot_mi_matrix(run.mi, run.files / "mi_matrix.png", run.factor_names,
                          kl=run.kl if rows_are_latents else None,
                          collapsed=run.collapsed if rows_are_latents else ())
    page.add("mi", _img(path, "rows: latents (with their KL), columns: factors"
                              + ("; grey rows are collapsed latents" if run.collapsed else "")))


def _factors(page: _Page, run: _Run) -> None:
    from disentkit.viz.factors import write_factor_traversals

    if run.model is None:
        raise ValueError("needs the trained model")
    paths = write_factor_traversals(run.model, run.data, run.files, seed=run.opts.seed,
                                    muted=run.collapsed)
    page.add("factors", _img(paths["images"], "one row per factor, the others held fixed"))
    page.add("factors", _img(paths["response"], "each latent's mean code vs the factor value: the "
                                                "two that move most in colour (the first with ±1 std "
                                                "over the other factors), the rest grey"))


def _reconstructions(page: _Page, run: _Run) -> None:
    from disentkit.viz.images import data_batch
    from disentkit.viz.latents import sample_indices
    from disentkit.viz.reconstruction import write_reconstructions

    if run.model is None or run.data is None:
        raise ValueError("needs the trained model and its dataset")
    idx = sample_indices(len(run.data), run.opts.num_images, run.opts.seed)
    path = write_reconstructions(run.model, data_batch(run.data, idx),
                                 run.files / "reconstructions.png")
    page.add("reconstructions", _img(path, "top: originals, bottom: reconstructions"))


def _autoencoder(page: _Page, run: _Run) -> None:
    """A diffusion autoencoder's (pdae, diti) code blocks and a counterfactual grid of two images."""
    from disentkit.viz.autoencoder import is_diffusion_autoencoder, layout_rows, write_counterfactual
    from disentkit.viz.images import data_batch
    from disentkit.viz.latents import sample_indices

    if not is_diffusion_autoencoder(run.model):
        return
    page.add("autoencoder", _grid(("blocks", "time steps", "code dims", "width"), layout_rows(run.model),
                                  num_cols=(3,)))
    if run.data is None:
        raise ValueError("the counterfactual grid needs the run's dataset")
    idx = sample_indices(len(run.data), 2, run.opts.seed)
    steps = getattr(run.model.config, "sample_steps", None)
    path = write_counterfactual(run.model, data_batch(run.data, idx), run.files / "counterfactual.png")
    page.add("autoencoder", _img(path, f"counterfactual: segments of image #{idx[0]}'s code moved towards "
                                       f"image #{idx[1]}'s (DDIM inversion and regeneration, {steps} steps)"))


def _samples(page: _Page, run: _Run) -> None:
    """Samples: a diffusion model's sampler (its config's small step budget), or decoded prior
    draws (:mod:`disentkit.viz.samples`)."""
    from disentkit.viz.samples import describe, write_samples

    if run.model is None:
        raise ValueError("needs the trained model")
    num = 2 * run.opts.num_images
    path = write_samples(run.model, run.files / "samples.png", num=num, seed=run.opts.seed)
    page.add("samples", _img(path, f"{num} samples: {describe(run.model)}, seed {run.opts.seed}"))


def _swaps(page: _Page, run: _Run) -> None:
    """A model's code-swap grids (``swap_grids``, :mod:`disentkit.viz.swaps`), as `disentkit swap`
    writes them with its defaults."""
    from disentkit.viz.swaps import write_swaps

    if run.data is None:
        raise ValueError("needs the run's dataset")
    written = write_swaps(run.model, run.data, run.files / "swaps", num_sources=3, num_targets=3,
                          seed=run.opts.seed)
    page.note("swaps", "row 0: source images, column 0: targets; cell (i, j): target i with the "
                       "named part of its code taken from source j")
    page.add("swaps", '<div class="pairs">' + "".join(_img(p, name) for name, p in written.items())
             + "</div>")


def _masks(page: _Page, run: _Run) -> None:
    """A mask-based model's (FDAE) N masks per image, as `disentkit masks` writes them."""
    from disentkit.viz.fdae_views import write_masks

    if run.data is None:
        raise ValueError("needs the run's dataset")
    path, count, concepts = write_masks(run.model, run.data, run.files / "masks.png",
                                        num=run.opts.num_images, seed=run.opts.seed)
    page.add("masks", _img(path, f"{count} images: the image, its {concepts} masks (they sum to 1 at "
                                 "every pixel) and the most weighted concept per pixel"))


def _pca_traversals(page: _Page, run: _Run) -> None:
    """Each content code moved along its first PCA direction (FDAE paper Fig. 6)."""
    from disentkit.viz.fdae_views import write_pca_traversals

    if run.data is None:
        raise ValueError("needs the run's dataset")
    paths = write_pca_traversals(run.model, run.data, run.files / "pca", num_seeds=3, steps=5,
                                 seed=run.opts.seed)
    page.note("pca", "rows: images; columns: the content code's score on its first principal "
                     "direction (5-95 % quantiles over 256 images), every other code kept; one "
                     "shared noise image, the run's sample_steps")
    page.add("pca", '<div class="pairs">' + "".join(_img(p, p.stem) for p in paths) + "</div>")


def _curves(page: _Page, run: _Run) -> None:
    from disentkit.viz.plots import (
        constant_series,
        curve_panels,
        plot_training_curves,
        read_metrics_jsonl,
    )

    rows = read_metrics_jsonl(run.path / "metrics.jsonl")
    constant = constant_series(rows)
    panels = curve_panels(rows, skip=list(constant))
    if panels:
        path = plot_training_curves(rows, run.files / "curves.png", skip=list(constant))
        page.add("curves", _img(path, "logged terms vs step: " + ", ".join(t for t, _ in panels)))
    if constant:
        page.add("curves", '<p class="constants">constant throughout training: '
                 + html.escape(", ".join(f"{k} = {v:g}" for k, v in constant.items())) + "</p>")
    if any("images_per_s" in keys for _, keys in panels):
        page.note("curves", "images/s is this machine's throughput (hardware and whatever else "
                            "ran beside it), not a property of the model")


def _metrics(page: _Page, run: _Run) -> None:
    """Every scalar score, and each metric's settings (results.json ``entries``)."""
    if run.results is None:
        page.note("metrics", "no results.json yet (run `disentkit eval RUN_DIR`)")
        return
    flat = flatten_metrics(run.results.get("metrics", {}))
    page.add("metrics", _table([(k, _fmt(v)) for k, v in flat.items()], ("metric", "score")))
    rows = []
    for name, entry in run.results.get("entries", {}).items():
        if isinstance(entry, dict):
            time_s = entry.get("time_s")
            rows.append((name, _settings(entry), str(entry.get("evaluated_at") or "unknown"),
                         f"{time_s:.1f} s" if isinstance(time_s, (int, float)) else ""))
    if rows:
        page.add("metrics", _grid(("metric", "scored with", "evaluated (UTC)", "took"), rows,
                                  cls="entries"))
    _stale_note(page, "metrics", run)


def _config(page: _Page, run: _Run) -> None:
    """config.yaml and summary.json, collapsed."""
    config_path = run.path / "config.yaml"
    if config_path.is_file():
        page.add("config", "<details><summary>config.yaml</summary><pre>"
                 + html.escape(config_path.read_text()) + "</pre></details>")
    else:
        page.note("config", "no config.yaml")
    status = [(k, str(v)) for k, v in run.summary.items() if not isinstance(v, (dict, list))]
    if status:
        page.add("config", "<details><summary>summary.json</summary>"
                 + _table(status, ("summary", "value")) + "</details>")
