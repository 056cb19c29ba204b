"""``evaluate_attributes``: the attribute metrics on an image data set with labels (CelebA, LFW).

Data sets without a factor grid (``attributes`` (N, A) instead of ``factor_sizes``) cannot be
sampled factor by factor, so their metrics read fixed images in index order, encode each image
once, and score the arrays with :mod:`disentkit.metrics.attributes`:

* **split** -- the last ``num_test`` images are held out, the ``num_train`` images before them
  are the training part. ``num_test=None``: CelebA's official test partition when the data set is
  the full aligned CelebA (202 599 images: the last 19 962, ``list_eval_partition.txt``), else the
  last tenth. ``num_train=None``: every image before the held-out part (for full CelebA that is
  the official train + valid partitions; DiTi chose its epoch on valid, the closed-form probes
  here have no epoch to choose).
* ``tad`` -- InfoDiffusion's protocol (:func:`~disentkit.metrics.attributes.tad_protocol`):
  ``num_points`` (10000) codes, 5-fold ``KFold(shuffle=True, random_state=seed)`` (seed 0 is
  InfoDiffusion's), TAD on each training fold, mean and std. The codes are the first
  ``num_points`` held-out images (InfoDiffusion's first 10000 test-set latents), or the last
  ``num_points`` images of the data set when the held-out part is smaller.
* ``attribute_probe_ap`` -- linear probe, mean average precision over the binary attributes on
  the held-out part (PDAE/DiTi CelebA protocol, closed-form substitute, see ``attributes``).
* ``attribute_regression`` -- least squares on the continuous attributes, mean Pearson r and
  mean MSE on the held-out part (DiTi's LFW protocol, closed-form substitute).
* ``linear_probe_ap`` / ``linear_probe_regression`` -- DiTi's trained linear probes
  (:mod:`disentkit.metrics.attribute_probe`): 15 Adam epochs, the epoch chosen on validation rows
  just before the held-out part (CelebA: the official valid partition); ``probe="linear"``
  makes them the defaults in place of the closed-form probes.

Presets: ``study`` (the protocols' sizes) and ``fast`` (2000 / 1000 images, for monitoring; so at
least 3000 images). ``num_train`` / ``num_test`` / ``num_points`` of :func:`evaluate_attributes`
(``disentkit eval --attr-train / --attr-test / --attr-points``) replace the preset's split sizes
for every metric, so a smaller labelled folder can be scored.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from disentkit.data.base import unit_float
from disentkit.errors import ConfigError
from disentkit.metrics.attribute_probe import LINEAR_PROBES, probe_split, run_linear_probe
from disentkit.metrics.attributes import attribute_probe_ap, attribute_regression, tad_protocol
from disentkit.metrics.declare import PresetView
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, encode_observations
from disentkit.progress import duration, say

__all__ = ["ATTRIBUTE_METRICS", "ATTRIBUTE_PRESETS", "attribute_split", "default_attribute_metrics",
           "evaluate_attributes"]

ATTRIBUTE_METRICS = ("tad", "attribute_probe_ap", "attribute_regression", "linear_probe_ap",
                     "linear_probe_regression")

#: size of the aligned CelebA set and of its official test partition (``list_eval_partition.txt``)
CELEBA_SIZE, CELEBA_TEST = 202599, 19962

#: {preset: {metric: parameters}}, read from each metric's declaration in ``attributes.py``
ATTRIBUTE_PRESETS = PresetView("attributes")


def attribute_split(
    num_items: int, num_train: int | None = None, num_test: int | None = None, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): the last ``num_test`` items and the ``num_train`` before.

    Defaults are described in the module docstring. Raises
    :class:`~disentkit.config.ConfigError` (a ``ValueError``) when the data set is too small for
    the sizes asked for.
    """
    if num_test is None:
        num_test = CELEBA_TEST if name.startswith("celeba") and num_items == CELEBA_SIZE else num_items // 10
    if num_test < 1 or num_test >= num_items:
        raise ConfigError(
            f"attribute split: need 1 <= num_test < {num_items} (images in the data set), got "
            f"num_test={num_test}; pass a smaller num_test (disentkit eval --attr-test N)"
        )
    available = num_items - num_test
    if num_train is None:
        num_train = available
    if not 1 <= num_train <= available:
        raise ConfigError(
            f"attribute split: {available} images precede the {num_test} held-out ones, but "
            f"num_train={num_train} were asked for; lower num_train or num_test (disentkit eval "
            "--attr-train N / --attr-test N)"
        )
    test = np.arange(available, num_items)
    train = np.arange(available - num_train, available)
    return train, test


def default_attribute_metrics(attributes: np.ndarray) -> list[str]:
    """``tad`` and ``attribute_probe_ap`` for binary (±1 / 0-1) labels, else ``attribute_regression``."""
    values = np.unique(np.asarray(attributes)[~np.isnan(np.asarray(attributes, dtype=np.float64))])
    binary = set(values.tolist()) <= {-1.0, 0.0, 1.0}
    return ["tad", "attribute_probe_ap"] if binary else ["attribute_regression"]


def _observations(data: Any, indices: np.ndarray) -> np.ndarray:
    return unit_float(data.uint8_from_indices(indices), getattr(data, "value_max", 255))


def evaluate_attributes(
    data: Any,
    representation_function: Any,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    preset: str = "study",
    params: dict[str, dict[str, Any]] | None = None,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    num_train: int | None = None,
    num_test: int | None = None,
    num_points: int | None = None,
    probe: str = "closed_form",
) -> dict[str, Any]:
    """Score a representation on an attribute-labelled image data set (module docstring).

    Args:
        data: ``len(data)``, ``data.attributes`` (N, A) and ``data.uint8_from_indices``.
        representation_function: float32 NHWC [0, 1] batch -> (n, D) codes.
        metrics: names from :data:`ATTRIBUTE_METRICS`; None = :func:`default_attribute_metrics`.
        seed: ``KFold`` seed of ``tad`` (0 = InfoDiffusion's).
        preset: ``"study"`` or ``"fast"``; ``params`` overrides single values per metric.
        encode_batch_size: images per representation call (each image is encoded once).
        num_train, num_test: split sizes for every metric (the probes' training and held-out
            parts; TAD's held-out part), over the preset and ``params``; None keeps them.
        num_points: TAD's number of codes, over the preset and ``params``.
        probe: ``"closed_form"`` or ``"linear"``: which probes the defaults (``metrics=None``) use.

    Returns the same layout as :func:`~disentkit.metrics.evaluate`: ``{"metrics", "config",
    "versions", "timings_s", "encoder"}``.
    """
    from disentkit.metrics.suite import library_versions

    if preset not in ATTRIBUTE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(ATTRIBUTE_PRESETS)}")
    attributes = getattr(data, "attributes", None)
    name = str(getattr(data, "name", type(data).__name__))
    if attributes is None:
        raise ValueError(f"{name} has no attribute labels (data.attributes); the attribute metrics need them")
    attributes = np.asarray(attributes)
    if attributes.ndim != 2 or attributes.shape[0] != len(data):
        raise ValueError(
            f"{name}: attributes must be (num_images, num_attributes) = ({len(data)}, A), got "
            f"{attributes.shape}"
        )
    if probe not in ("closed_form", "linear"):
        raise ConfigError(f"probe must be 'closed_form' or 'linear', got {str(probe)[:40]!r}")
    linear = {"attribute_probe_ap": "linear_probe_ap", "attribute_regression": "linear_probe_regression"}
    metrics = list(metrics) if metrics else [linear.get(m, m) if probe == "linear" else m
                                             for m in default_attribute_metrics(attributes)]
    unknown = [m for m in metrics if m not in ATTRIBUTE_METRICS]
    if unknown:
        raise ValueError(
            f"metric(s) {unknown} do not apply to {name}, which has attribute labels but no "
            f"ground-truth factor grid; use {list(ATTRIBUTE_METRICS)}"
        )
    split = {"num_train": num_train, "num_test": num_test, "num_points": num_points}
    plans: dict[str, tuple[dict[str, Any], np.ndarray, np.ndarray]] = {}
    for metric in metrics:
        p = copy.deepcopy(ATTRIBUTE_PRESETS[preset][metric])
        p.update((params or {}).get(metric, {}))
        # TAD reads num_test (its held-out part) and num_points, the probes num_train and num_test
        keys = ("num_test", "num_points") if metric == "tad" else ("num_train", "num_test")
        p.update((k, split[k]) for k in keys if split[k] is not None)
        if metric == "tad":
            _, test = attribute_split(len(data), 1, p.pop("num_test", None), name)
            n = int(p.pop("num_points"))
            if not 1 <= n <= len(data):
                raise ConfigError(f"tad: num_points={n} but {name} has {len(data)} images; lower it "
                                  "(disentkit eval --attr-points N)")
            start = int(test[0]) if len(data) - int(test[0]) >= n else len(data) - n
            plans[metric] = (p, np.arange(start, start + n), np.arange(0))
        elif metric in LINEAR_PROBES:  # trained probes: validation rows at the end of the fit part
            train, test, p["num_valid"] = probe_split(len(data), p.pop("num_train"), p.get("num_valid"),
                                                      p.pop("num_test"), name,
                                                      getattr(data, "attribute_partition", None))
            plans[metric] = (p, train, test)
        else:
            train, test = attribute_split(len(data), p.pop("num_train"), p.pop("num_test"), name)
            plans[metric] = (p, train, test)
    needed = np.unique(np.concatenate([np.concatenate([tr, te]) for _, tr, te in plans.values()]))
    t0 = time.perf_counter()
    say(f"eval: encoding {len(needed):,} images of {name} for {', '.join(metrics)}")
    codes_needed = np.concatenate([
        encode_observations(representation_function, _observations(data, needed[s:s + 4096]),
                            encode_batch_size)
        for s in range(0, len(needed), 4096)
    ])
    timings = {"encode": time.perf_counter() - t0}
    say(f"eval: encoded in {duration(timings['encode'])}")
    row = np.full(len(data), -1, dtype=np.int64)
    row[needed] = np.arange(len(needed))
    results: dict[str, Any] = {}
    config: dict[str, Any] = {"seed": seed, "preset": preset, "protocol": "attributes",
                              "encode_batch_size": encode_batch_size, "params": {}}
    for metric in metrics:
        p, tr, te = plans[metric]
        t0 = time.perf_counter()
        if metric == "tad":
            config["params"][metric] = {**p, "num_points": len(tr), "first_index": int(tr[0])}
            results[metric] = tad_protocol(codes_needed[row[tr]], attributes[tr], seed=seed,
                                           max_points=None, **p)
        elif metric in LINEAR_PROBES:
            fit = tr[:-p["num_valid"]]
            config["params"][metric] = {**p, "num_train": len(fit), "num_test": len(te),
                                        "first_train_index": int(tr[0]), "first_test_index": int(te[0])}
            results[metric] = run_linear_probe(
                metric, p, codes_needed[row[tr]], attributes[tr], codes_needed[row[te]], attributes[te],
                mirrored=lambda fit=fit: encode_observations(  # NHWC: axis 2 is the width
                    representation_function, np.ascontiguousarray(_observations(data, fit)[:, :, ::-1]),
                    encode_batch_size))
        else:
            config["params"][metric] = {**p, "num_train": len(tr), "num_test": len(te),
                                        "first_train_index": int(tr[0]), "first_test_index": int(te[0])}
            fn = attribute_probe_ap if metric == "attribute_probe_ap" else attribute_regression
            results[metric] = fn(codes_needed[row[tr]], attributes[tr], codes_needed[row[te]],
                                 attributes[te], **p)
        timings[metric] = time.perf_counter() - t0
        say(f"eval: {metric} done in {duration(timings[metric])}")
    return {
        "metrics": results,
        "config": config,
        "versions": library_versions(),
        "timings_s": timings,
        "encoder": {"observations": int(len(needed)), "code_cache": "off"},
    }
