"""Evaluate a trained run: encode with its model, score every requested metric, write
``results.json`` into the run directory (scores, parameters, protocol, library versions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from disentkit.training.checkpoint import write_text_atomic

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
) -> dict[str, Any]:
    """Score a run's representation on its ground-truth dataset; returns and saves the results.

    Defaults come from the run config's ``eval`` section. The model's ``encode`` gives the codes
    (the posterior mean for the VAE family), computed in large batches and shared by the metrics.
    """
    from disentkit.api import load_run
    from disentkit.metrics import evaluate, representation_from_model

    run = load_run(run_dir, device=device)
    cfg = run.config.eval
    metrics = list(metrics) if metrics else list(cfg.metrics)
    preset = preset or cfg.preset
    seed = cfg.seed if seed is None else seed
    data = run.data()
    if not hasattr(data, "factor_sizes"):
        raise ValueError(
            f"dataset '{run.config.data.name}' has no ground-truth factors; the disentanglement "
            "metrics need a ground-truth dataset (attribute metrics such as tad take labels)"
        )
    representation = representation_from_model(run.model, device=device)
    results = evaluate(data, representation, metrics=metrics, seed=seed, preset=preset)
    payload = _json_safe({"run": str(run.path), "dataset": run.config.data.name, **results})
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
