"""Evaluate a trained run: encode with its model, score every requested metric, write
``results.json`` into the run directory (scores, parameters, protocol, library versions).

``results.json`` keeps one entry per metric: a new evaluation replaces the entries of the metrics
it scores and keeps the others, and says which it replaced and what changed (seed, preset,
protocol, representation, parameters, checkpoint step). ``metrics[name]`` is the score dict and
``entries[name]`` its settings; ``config``, ``versions``, ``timings_s`` and ``encoder`` describe
the latest evaluation (the metrics listed in ``evaluated``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from disentkit.errors import UnscorableDataError
from disentkit.training.checkpoint import write_text_atomic


def __getattr__(name: str) -> Any:
    """``HEADLINE``: ``{metric: the headline key of its result dict}`` for tables, a view of each
    metric's declaration (``headline=`` of :func:`disentkit.metrics.declare.declare_metric`);
    made on first use so that importing this module does not import the metric suite."""
    if name == "HEADLINE":
        from disentkit.metrics.declare import HeadlineView

        return HeadlineView()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _json_safe(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def evaluate_run(
    run_dir: str | Path,
    metrics: list[str] | None = None,
    preset: str | None = None,
    seed: int | None = None,
    device: str = "cpu",
    quiet: bool = False,
    representation: str = "mean",
    protocol: str | None = None,
    groups: dict[str, int | None] | None = None,
    attribute_split: dict[str, int | None] | None = None,
    attribute_probe: dict[str, str | None] | None = None,
    other_data: list[str] | None = None,
) -> dict[str, Any]:
    """Score a run's representation on its dataset; returns and saves the results.

    ``other_data`` (``["name=celeba", "crop=d2c", ...]``) scores it on another dataset instead, as
    DiTi probes encoders trained on CelebA's LMDB or FFHQ on labelled CelebA and LFW
    (:func:`other_dataset`); those scores go to ``results_<name>.json``, so the run's own
    ``results.json`` is never mixed with another dataset's.

    Defaults come from the run config's ``eval`` section. ``representation="mean"``: the model's
    ``encode`` (the posterior mean for the VAE family, dlib's headline representation);
    ``"sampled"``: one posterior sample per encoding (dlib's second representation, CFASL's
    evaluated z; fresh noise each call, so the grid code cache is off and the noise comes from a
    generator seeded with ``seed``). Codes are computed in large batches and shared by the metrics.

    A ground-truth dataset (``factor_sizes``) runs :func:`disentkit.metrics.evaluate`; a dataset
    with attribute labels only (CelebA, LFW) runs :func:`disentkit.metrics.evaluate_attributes`
    (TAD and linear probes; its defaults when ``metrics`` is not given).

    ``protocol`` (ground-truth data): ``"dlib"``, or ``"fdae"`` / ``"disdiff"`` with ``groups`` =
    ``{"num_groups" | "group_size", "group_dims", "disdiff_fit_points"}`` (consecutive code
    groups, :func:`disentkit.metrics.suite.protocol_arguments`); under FDAE the run's default
    metrics without an FDAE form (BetaVAE) are left out. ``protocol=None`` takes the run's
    ``eval.protocol``, else the model's ``default_protocol``; a grouped protocol without a layout
    takes ``eval.num_groups`` / ``eval.group_size``, else the groups the model declares
    (``code_groups()``) (:func:`resolve_protocol`). ``attribute_split`` (attribute data):
    ``{"num_train", "num_test", "num_points"}`` over the preset's split sizes. ``results.json`` holds
    ``attribute_probe`` (attribute data): ``{"probe": "closed_form" | "linear", "select_on":
    "valid" | "test"}``: the default probes, and where ``linear_probe_regression`` picks its epoch
    (:func:`disentkit.metrics.attribute_probe.linear_probe_regression`). ``results.json`` holds
    the run, dataset, representation, every metric's result, the parameters and protocol
    (``config``), library versions and timings.
    """
    from disentkit.config import ConfigError
    from disentkit.metrics import evaluate, evaluate_attributes, representation_from_model
    from disentkit.metrics.suite import FDAE_METRICS, protocol_arguments
    from disentkit.run_loading import load_run

    if representation not in ("mean", "sampled"):
        raise ValueError(f"representation must be 'mean' or 'sampled', got {representation!r}")
    run = load_run(run_dir, device=device)
    cfg = run.config.eval
    preset = preset or cfg.preset
    seed = cfg.seed if seed is None else seed
    if other_data:
        data_name, data = other_dataset(run, other_data)
    else:
        data_name, data = run.config.data.name, run.data()
    rep = representation_from_model(run.model, device=device, sampled=representation == "sampled",
                                    sample_seed=seed)
    protocol, groups, chosen = resolve_protocol(run.model, cfg, protocol, groups)
    if hasattr(data, "factor_sizes"):
        if any(v is not None for v in (attribute_probe or {}).values()):
            raise ConfigError(
                "--probe / --select-epoch-on apply to attribute-labelled data such as celeba or lfw; "
                f"'{data_name}' has ground-truth factors; drop them")
        if any(v is not None for v in (attribute_split or {}).values()):
            raise ConfigError(
                "the attribute split sizes (--attr-train/--attr-test/--attr-points) apply to "
                f"attribute-labelled data such as celeba or lfw; '{data_name}' has "
                "ground-truth factors, whose metrics take their sizes from --preset")
        if protocol == "fdae" and not metrics:  # the run's list may hold metrics FDAE has no form of
            metrics = [m for m in cfg.metrics if m in FDAE_METRICS]
        metrics = list(metrics) if metrics else list(cfg.metrics)
        code_cache = "off" if representation == "sampled" else "auto"
        grouped = protocol_arguments(protocol, data, representation_from_model(run.model, device=device),
                                     **(groups or {}))
        results = evaluate(data, rep, metrics=metrics, seed=seed, preset=preset, code_cache=code_cache,
                           **grouped)
    elif getattr(data, "attributes", None) is not None:
        if protocol != "dlib" and chosen:
            raise ConfigError(f"protocol {protocol!r} scores code groups on ground-truth factors; "
                              f"'{data_name}' has attribute labels only, so drop --protocol")
        options = attribute_probe or {}
        select = ({"linear_probe_regression": {"select_on": options["select_on"]}}
                  if options.get("select_on") else None)
        results = evaluate_attributes(data, rep, metrics=list(metrics) if metrics else None, seed=seed,
                                      preset=preset, params=select,
                                      probe=options.get("probe") or "closed_form",
                                      **(attribute_split or {}))
    else:
        raise UnscorableDataError(
            f"dataset '{data_name}' has neither ground-truth factors nor attribute labels; "
            "the disentanglement metrics need a ground-truth dataset, the attribute metrics (tad, "
            "attribute_probe_ap, attribute_regression) a labelled one such as celeba or lfw"
        )
    fresh = _json_safe({"run": str(run.path), "dataset": data_name,
                        "representation": representation, **results})
    if other_data:
        fresh["data_overrides"] = list(other_data)
    file_name = f"results_{data_name}.json" if other_data else "results.json"
    payload, note = save_results(Path(run_dir), fresh, step=_run_step(Path(run_dir)), file_name=file_name)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if not quiet:
        print(format_table(payload, only=payload["evaluated"]))
    return payload


def other_dataset(run: Any, settings: list[str]) -> tuple[str, Any]:
    """``(name, dataset)`` of ``settings`` (``key=value`` items of a data section, ``name``
    required) in place of the run's, with the run's data root; refused in one line unless its
    images have the shape the model was trained on."""
    import dataclasses

    from disentkit.builders import build_dataset, image_shape_of
    from disentkit.config import ConfigError, apply_overrides, data_section

    section = apply_overrides({}, [f"data.{item}" for item in settings]).get("data", {})
    if "name" not in section:
        raise ConfigError(f"--data needs name=DATASET among its settings (e.g. --data name=celeba "
                          f"image_size=64 crop=d2c), got {' '.join(settings)[:80]!r}")
    data_config = data_section(section)
    dataset = build_dataset(dataclasses.replace(run.config, data=data_config))
    shape, expected = image_shape_of(dataset), tuple(run.model.image_shape)
    if shape != expected:
        raise ConfigError(f"--data {section['name']}: its images are {shape} (C, H, W) but the model "
                          f"was trained on {expected}; set image_size (and the crop) to match")
    return data_config.name, dataset


def resolve_protocol(model: Any, eval_config: Any, protocol: str | None,
                     groups: dict[str, Any] | None) -> tuple[str, dict[str, Any], bool]:
    """``(protocol, group arguments, chosen)`` of one evaluation: the protocol asked for, else
    the run's ``eval.protocol``, else the model's ``default_protocol``; for a grouped protocol
    without ``num_groups``/``group_size``, those of ``eval`` or else the model's ``code_groups()``
    (``code_groups`` in the returned arguments). ``chosen``: the protocol was asked for (by the
    caller or the config) rather than being the model's default."""
    chosen = protocol is not None or getattr(eval_config, "protocol", None) is not None
    protocol = protocol or getattr(eval_config, "protocol", None) or \
        getattr(model, "default_protocol", "dlib")
    groups = dict(groups or {})
    if protocol != "dlib" and groups.get("num_groups") is None and groups.get("group_size") is None:
        num, size = getattr(eval_config, "num_groups", None), getattr(eval_config, "group_size", None)
        if num is not None or size is not None:
            groups.update(num_groups=num, group_size=size)
        else:
            declared = model.code_groups() if callable(getattr(model, "code_groups", None)) else None
            if declared:
                groups["code_groups"] = declared
    return protocol, groups, chosen


def headline_scores(results: dict[str, Any]) -> dict[str, float]:
    """{metric: headline score} from a results.json payload."""
    from disentkit.metrics.declare import headline_keys

    headline, scores = headline_keys(), {}
    for name, values in results.get("metrics", {}).items():
        if not isinstance(values, dict):
            continue
        key = headline.get(name)
        if key in values:
            scores[name] = float(values[key])
        elif name == "dci":
            scores[name] = float(values.get("disentanglement", float("nan")))
    return scores


def format_table(results: dict[str, Any], only: list[str] | None = None) -> str:
    """Markdown table of every scalar score (of the metrics in ``only`` when given)."""
    lines = ["| metric | score | value key |", "|---|---|---|"]
    for name, values in results.get("metrics", {}).items():
        if not isinstance(values, dict) or (only is not None and name not in only):
            continue
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(f"| {name} | {value:.4f} | {key} |")
    return "\n".join(lines)


# ---- results.json: one entry per metric, merged across evaluations ------------------------------

#: layout of results.json: 2 keeps one entry per metric with its own settings (``entries``);
#: 1 (files without ``layout``) held one evaluation, its settings in ``config``
RESULTS_LAYOUT = 2

#: an entry's settings that a replacement names when they change, in this order
_COMPARED = ("protocol", "representation", "preset", "seed", "groups", "group_dims",
             "disdiff_fit_points", "step", "params")


def _run_step(run_dir: Path) -> int | None:
    """The run's step in summary.json (that of the checkpoint evaluated), or None."""
    try:
        step = json.loads((run_dir / "summary.json").read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def metric_entries(results: dict[str, Any], evaluated_at: str | None = None,
                   step: int | None = None) -> dict[str, dict[str, Any]]:
    """``{metric: settings}`` of one evaluation in :func:`disentkit.metrics.evaluate`'s layout:
    its seed, preset, protocol (and group layout), representation, the metric's own parameters,
    the checkpoint step, when it ran and how long the metric took."""
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    timings = results.get("timings_s") if isinstance(results.get("timings_s"), dict) else {}
    shared = {key: config[key] for key in ("seed", "preset", "protocol", "code_cache", "groups",
                                           "group_dims", "disdiff_fit_points") if key in config}
    entries = {}
    for name in results.get("metrics") or {}:
        entries[name] = {**shared, "representation": results.get("representation"),
                         "params": params.get(name, {}), "step": step, "evaluated_at": evaluated_at,
                         "time_s": timings.get(name)}
        if isinstance(results.get("versions"), dict):
            entries[name]["versions"] = results["versions"]
    return entries


def upgrade_results(results: dict[str, Any]) -> dict[str, Any]:
    """A results.json payload in the current layout. A layout-1 file (one evaluation, no
    ``entries``) gets each metric's entry from its ``config``; when and at which step it ran are
    unknown (None). Metrics without an entry in a layout-2 file get one the same way."""
    metrics = results.get("metrics") if isinstance(results.get("metrics"), dict) else {}
    given = results.get("entries") if isinstance(results.get("entries"), dict) else {}
    derived = metric_entries({**results, "metrics": metrics})
    upgraded = dict(results)
    upgraded.update(layout=RESULTS_LAYOUT, metrics=dict(metrics),
                    entries={name: given[name] if isinstance(given.get(name), dict) else derived[name]
                             for name in metrics})
    if not isinstance(upgraded.get("evaluated"), list):
        upgraded["evaluated"] = list(metrics)
    return upgraded


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"protocol dlib -> fdae; seed 0 -> 3"`` between two entries (settings unknown on one
    side are left out), or ``"same settings"``."""
    changes = []
    for key in _COMPARED:
        before, after = old.get(key), new.get(key)
        if before is None or after is None or before == after:
            continue
        if key == "params" and isinstance(before, dict) and isinstance(after, dict):
            changes += [f"{k} {_short(before.get(k))} -> {_short(after.get(k))}"
                        for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        else:
            changes.append(f"{key} {_short(before)} -> {_short(after)}")
    return "; ".join(changes)[:240] if changes else "same settings"


def merge_results(previous: dict[str, Any] | None, fresh: dict[str, Any], step: int | None = None,
                  evaluated_at: str | None = None,
                  file_name: str = "results.json") -> tuple[dict[str, Any], str]:
    """Merge a new evaluation into the previous results.json payload: the metrics it scored
    replace theirs, the others are kept. Returns ``(payload, note)``; the note (about
    ``file_name``) names what was replaced (with what changed) and kept, and is empty when
    nothing was there before."""
    new_entries = metric_entries(fresh, evaluated_at, step)
    evaluated = list(fresh.get("metrics") or {})
    old = upgrade_results(previous) if previous else {"metrics": {}, "entries": {}}
    replaced = {name: describe_changes(old["entries"].get(name, {}), new_entries[name])
                for name in evaluated if name in old["metrics"]}
    kept = [name for name in old["metrics"] if name not in new_entries]
    payload = {**fresh, "layout": RESULTS_LAYOUT,
               "metrics": {**old["metrics"], **fresh.get("metrics", {})},
               "entries": {**old["entries"], **new_entries},
               "evaluated": evaluated, "replaced": replaced}
    return payload, _merge_note(replaced, kept, old["entries"], step, file_name)


def _merge_note(replaced: dict[str, str], kept: list[str], old_entries: dict[str, Any],
                step: int | None, file_name: str) -> str:
    parts = []
    if replaced:
        parts.append("replaced " + ", ".join(f"{name} ({why})" for name, why in replaced.items()))
    if kept:
        parts.append("kept " + ", ".join(_kept_label(n, old_entries, step) for n in kept)
                     + " from earlier evaluations")
    note = f"{file_name}: " + "; ".join(parts) if parts else ""
    return note if len(note) <= 600 else note[:597] + "..."


def _kept_label(name: str, old_entries: dict[str, Any], step: int | None) -> str:
    """``"sap (step 6)"`` when a kept metric scored another checkpoint than this evaluation."""
    was = old_entries.get(name, {}).get("step")
    if step is None or was is None or was == step:
        return name
    return f"{name} (step {was})"


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to a free ``results.previous[-N].json`` beside it; returns the new path."""
    number = 1
    while True:
        target = path.with_name(f"{path.stem}.previous{'' if number == 1 else f'-{number}'}.json")
        if not target.exists():
            path.replace(target)
            return target
        number += 1


def _read_previous(path: Path, dataset: str) -> tuple[dict[str, Any] | None, str]:
    """The results.json to merge into, or None; a file that cannot be read, or holds another
    dataset's scores, is renamed aside (never overwritten) and the note says so."""
    if not path.exists():
        return None, ""
    try:
        previous = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        previous = None
        why = "could not be parsed as JSON"
    else:
        why = "is not a JSON object" if not isinstance(previous, dict) else ""
    if isinstance(previous, dict) and previous.get("dataset") not in (None, dataset):
        why = f"held scores of dataset {_short(previous['dataset'])} (the run now uses {_short(dataset)})"
    if not why:
        return previous, ""
    moved = _set_aside(path)
    return None, f"the previous {path.name} {why}; it was kept as {moved.name} and a new one written"


def save_results(run_dir: Path, fresh: dict[str, Any], step: int | None = None,
                 file_name: str = "results.json") -> tuple[dict[str, Any], str]:
    """Merge ``fresh`` (one evaluation) into ``run_dir/file_name`` and write it atomically;
    returns the written payload and a note on what was replaced, kept or set aside ("" if none)."""
    path = Path(run_dir) / file_name
    previous, aside = _read_previous(path, str(fresh.get("dataset")))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload, note = merge_results(previous, fresh, step=step, evaluated_at=now, file_name=file_name)
    write_text_atomic(path, json.dumps(payload, indent=2))
    return payload, "; ".join(n for n in (aside, note) if n)
