"""Evaluate a trained run: encode with its model, score every requested metric, write
``results.json`` into the run directory (scores, parameters, protocol, library versions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from disentkit.errors import UserError
from disentkit.training.checkpoint import write_text_atomic


class UnscorableDataError(UserError, ValueError):
    """The run's dataset has neither ground-truth factors nor attribute labels, so no metric
    can score it (a property of the data, not a failure of the run)."""

#: the headline number of each metric's result dict, for tables
HEADLINE = {
    "beta_vae": "eval_accuracy",
    "factor_vae": "eval_accuracy",
    "mig": "discrete_mig",
    "sap": "SAP_score",
    "dci": "disentanglement",
    "modularity_explicitness": "modularity_score",
    "irs": "IRS",
    "unsupervised": "gaussian_total_correlation",
    "mfvm": "mfvm_mean",
    "mfvm_dlib": "mfvm_mean",
    "tad": "tad",
    "attribute_probe_ap": "mean_ap",
    "attribute_regression": "mean_pearson_r",
}


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
    protocol: str = "dlib",
    groups: dict[str, int | None] | None = None,
    attribute_split: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """Score a run's representation on its dataset; returns and saves the results.

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
    metrics without an FDAE form (BetaVAE) are left out. ``attribute_split`` (attribute data):
    ``{"num_train", "num_test", "num_points"}`` over the preset's split sizes. ``results.json`` holds
    the run, dataset, representation, every metric's result, the parameters and protocol
    (``config``), library versions and timings.
    """
    from disentkit.api import load_run
    from disentkit.config import ConfigError
    from disentkit.metrics import evaluate, evaluate_attributes, representation_from_model
    from disentkit.metrics.suite import FDAE_METRICS, protocol_arguments

    if representation not in ("mean", "sampled"):
        raise ValueError(f"representation must be 'mean' or 'sampled', got {representation!r}")
    run = load_run(run_dir, device=device)
    cfg = run.config.eval
    preset = preset or cfg.preset
    seed = cfg.seed if seed is None else seed
    data = run.data()
    rep = representation_from_model(run.model, device=device, sampled=representation == "sampled",
                                    sample_seed=seed)
    if hasattr(data, "factor_sizes"):
        if any(v is not None for v in (attribute_split or {}).values()):
            raise ConfigError(
                "the attribute split sizes (--attr-train/--attr-test/--attr-points) apply to "
                f"attribute-labelled data such as celeba or lfw; '{run.config.data.name}' has "
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
        if protocol != "dlib":
            raise ConfigError(f"protocol {protocol!r} scores code groups on ground-truth factors; "
                              f"'{run.config.data.name}' has attribute labels only, so drop --protocol")
        results = evaluate_attributes(data, rep, metrics=list(metrics) if metrics else None, seed=seed,
                                      preset=preset, **(attribute_split or {}))
    else:
        raise UnscorableDataError(
            f"dataset '{run.config.data.name}' has neither ground-truth factors nor attribute labels; "
            "the disentanglement metrics need a ground-truth dataset, the attribute metrics (tad, "
            "attribute_probe_ap, attribute_regression) a labelled one such as celeba or lfw"
        )
    payload = _json_safe({"run": str(run.path), "dataset": run.config.data.name,
                          "representation": representation, **results})
    write_text_atomic(Path(run_dir) / "results.json", json.dumps(payload, indent=2))
    if not quiet:
        print(format_table(payload))
    return payload


def headline_scores(results: dict[str, Any]) -> dict[str, float]:
    """{metric: headline score} from a results.json payload."""
    scores = {}
    for name, values in results.get("metrics", {}).items():
        if not isinstance(values, dict):
            continue
        key = HEADLINE.get(name)
        if key in values:
            scores[name] = float(values[key])
        elif name == "dci":
            scores[name] = float(values.get("disentanglement", float("nan")))
    return scores


def format_table(results: dict[str, Any]) -> str:
    lines = ["| metric | score | value key |", "|---|---|---|"]
    for name, values in results.get("metrics", {}).items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(f"| {name} | {value:.4f} | {key} |")
    return "\n".join(lines)
