"""``evaluate``: run several metrics on one representation, sharing codes where exact.

Every metric gets a fresh ``np.random.RandomState(seed)`` (dlib's driver, ``evaluate.py``). The
``generate_batch_factor_code`` metrics (MIG, SAP, DCI, Modularity/Explicitness, Unsupervised,
IRS) replay the same stream, so their draws are served by one :class:`CodeCache` -- with the study
preset every one of them uses the same 10000 training (and 5000 test) points, encoded once.

With ``code_cache="auto"`` (default) a dataset whose observations are a fixed function of the
factors (``deterministic_observations``) is encoded once, whole, when the run would otherwise
encode more observations than the grid holds; every metric then reads its codes by flat index
(:mod:`disentkit.metrics.grid`) while drawing exactly the same random numbers.

Presets (``preset=``): ``"study"`` = Locatello et al. (2019) values (``metric_configs/*.gin``) and CFASL
defaults for ``mfvm``; ``"fast"`` = smaller sample counts for monitoring during training.
Protocols (``protocol=``): ``"dlib"`` (codes as given), ``"disdiff"`` and ``"fdae"`` (group
codes, see :mod:`disentkit.metrics.groups`).
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from disentkit.metrics.declare import NameView, PresetView, declaration, fdae_metrics
from disentkit.metrics.grid import GridCacheTooLarge, GridCodes
from disentkit.metrics.groups import GroupReducer, contiguous_groups, normalize_groups
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, CodeCache, encode_observations
from disentkit.progress import duration, say
from disentkit.registry import METRICS

__all__ = ["DEFAULT_METRICS", "FDAE_METRICS", "PROTOCOLS", "PRESETS", "evaluate", "library_versions",
           "planned_observations", "protocol_arguments"]

DEFAULT_METRICS = ("beta_vae", "factor_vae", "mig", "sap", "dci")

PROTOCOLS = ("dlib", "disdiff", "fdae")

#: metrics with an FDAE form (each declares its ``fdae`` form next to its definition): the
#: shared-code ones score the per-group PCA codes, FactorVAE fits the reduction on its variance
#: sample; BetaVAE (and the mFVM variants) are not in FDAE
FDAE_METRICS = NameView(fdae_metrics)

#: ``code_cache="auto"`` does not cache grids whose codes would need more memory than this.
GRID_CACHE_MAX_BYTES = 2 * 2**30

#: ``{preset: {metric: parameters}}``: each metric declares its sizes per preset in its module
#: (:func:`~disentkit.metrics.declare.declare_metric`); ``study`` = Locatello et al. (2019),
#: ``fast`` = smaller samples for monitoring
PRESETS = PresetView("factors")


def library_versions() -> dict[str, str]:
    """Versions that can change metric numbers (scikit-learn above all)."""
    import scipy
    import sklearn
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "sklearn": sklearn.__version__, "torch": torch.__version__}


class _Counting:
    """Representation wrapper that counts calls and encoded observations."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0
        self.observations = 0

    def __call__(self, x: np.ndarray) -> Any:
        self.calls += 1
        self.observations += len(x)
        return self.fn(x)


def _metric_params(name: str, preset: str, params: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    p = declaration(name).sizes(preset)
    p.update(copy.deepcopy((params or {}).get(name, {})))
    return p


def planned_observations(
    metrics: Sequence[str],
    num_factors: int,
    preset: str = "study",
    params: dict[str, dict[str, Any]] | None = None,
    share_codes: bool = True,
) -> int:
    """Number of observations ``evaluate`` would encode without a grid code cache.

    Each metric declares its count (``planned``, e.g. BetaVAE ``2 * batch_size * (num_train +
    num_eval)``); the shared-code metrics count their draws (the largest one when codes are
    shared, their sum otherwise). Other metrics count 0.
    """
    total, shared = 0, []
    for name in metrics:
        decl = declaration(name)
        p = _metric_params(name, preset, params)
        if decl.shared_code:
            shared.append(int(sum(decl.draw_sizes(**p))))
        elif decl.planned is not None:
            total += int(decl.planned(p, num_factors))
    if shared:
        total += max(shared) if share_codes else sum(shared)
    return int(total)


def protocol_arguments(
    protocol: str,
    data: Any,
    probe: Any,
    num_groups: int | None = None,
    group_size: int | None = None,
    group_dims: int | None = None,
    disdiff_fit_points: int | None = None,
    code_groups: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`evaluate` for ``protocol`` with consecutive code groups.

    ``"dlib"``: none (the group options must be unset). ``"fdae"`` / ``"disdiff"``: ``groups`` =
    :func:`~disentkit.metrics.groups.contiguous_groups` (``num_groups`` equal chunks or chunks of
    ``group_size``), plus ``group_dims`` (FDAE) or ``disdiff_fit_points`` (DisDiff). The code
    dimension is read from one observation encoded by ``probe``, a representation that draws no
    noise (so a sampled representation's stream is left untouched). Without ``num_groups`` and
    ``group_size``, ``code_groups`` (the groups a model declares, ``Model.code_groups()``) are the
    layout. Raises :class:`~disentkit.config.ConfigError` for options that do not fit the protocol.
    """
    from disentkit.errors import ConfigError

    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    given = {"num_groups": num_groups, "group_size": group_size, "group_dims": group_dims,
             "disdiff_fit_points": disdiff_fit_points}
    if protocol == "dlib":
        flags = {"num_groups": "--groups", "group_size": "--group-size"}  # the eval options
        stray = [f"{flags.get(k, '--' + k.replace('_', '-'))} ({k})" for k, v in given.items()
                 if v is not None]
        if stray:
            raise ConfigError(f"only the grouped protocols (fdae, disdiff) take {', '.join(stray)}; "
                              "add --protocol fdae or disdiff, or drop the option")
        return {}
    if protocol == "disdiff" and group_dims is not None:
        raise ConfigError("group_dims is FDAE's PCA size per group; DisDiff reduces every group "
                          "to 1 dimension, so drop it or use --protocol fdae")
    if protocol == "fdae" and disdiff_fit_points is not None:
        raise ConfigError("disdiff_fit_points sets DisDiff's PCA fit; FDAE fits on each metric's "
                          "own training sample, so drop it or use --protocol disdiff")
    if num_groups is None and group_size is None and not code_groups:
        raise ConfigError(f"protocol {protocol!r} scores groups of code dimensions; give the layout "
                          "with num_groups (eval --groups K) or group_size (eval --group-size S)")
    if num_groups is None and group_size is None:
        layout = [[int(i) for i in group] for group in code_groups or ()]
    else:
        code_dim = encode_observations(probe, data.sample_observations(1, np.random.RandomState(0)),
                                       1).shape[1]
        layout = contiguous_groups(code_dim, num_groups, group_size)
    kwargs: dict[str, Any] = {"protocol": protocol, "groups": layout}
    if protocol == "fdae":
        kwargs["group_dims"] = group_dims
    else:
        kwargs["disdiff_fit_points"] = disdiff_fit_points
    return kwargs


def _fdae_score_shared(decl: Any, draws: list, rs: np.random.RandomState,
                       params: dict[str, Any], groups: Any, dims: int) -> dict[str, Any]:
    """Per-group PCA (fitted on the training draw) of every draw, scored by the metric's FDAE form."""
    reducer = GroupReducer(draws[0][0], groups, dims)
    reduced = [(reducer(c), f) for c, f in draws]
    if callable(decl.fdae):
        return decl.fdae(reduced, reducer, rs, params)
    return decl.score_draws(reduced, rs, **params)


def evaluate(
    ground_truth_data: Any,
    representation_function: Any,
    metrics: Sequence[str] = DEFAULT_METRICS,
    seed: int = 0,
    preset: str = "study",
    protocol: str = "dlib",
    groups: Any = None,
    group_dims: int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    n_jobs: int | None = -1,
    share_codes: bool = True,
    disdiff_fit_points: int | None = None,
    code_cache: str = "auto",
) -> dict[str, Any]:
    """Evaluate ``metrics`` on one representation; every metric starts from ``RandomState(seed)``.

    Args:
        ground_truth_data: a :class:`~disentkit.data.base.GroundTruthData`.
        representation_function: float32 NHWC [0, 1] batch -> (n, D) codes (numpy or torch).
        metrics: registered metric names (``METRICS``), e.g. ``("mig", "dci")``.
        preset: ``"study"`` (Locatello et al. 2019) or ``"fast"``.
        protocol: ``"dlib"``; ``"disdiff"`` (per-group PCA to 1 dim fitted on the codes of the
            whole data set in index order, or of ``disdiff_fit_points`` points drawn with
            ``RandomState(seed)``); ``"fdae"`` (per-group PCA to ``group_dims`` =
            ``36 // num_groups`` by default, fitted on each metric's training sample; k-means
            MIG; DCI GBT learning rate 0.1; BetaVAE is not part of FDAE's protocol).
        params: per-metric overrides merged over the preset, e.g. ``{"dci": {"num_train": 500}}``.
        encode_batch_size: observations per representation call (no effect on the numbers).
        n_jobs: parallel workers for DCI's per-factor GBTs and SAP's fits.
        share_codes: serve the ``generate_batch_factor_code`` metrics from one code cache.
        code_cache: ``"grid"`` encodes every image of the grid once (``encode_batch_size`` per
            call) and serves all codes by flat index (:class:`~disentkit.metrics.grid.GridCodes`;
            the dataset must declare ``deterministic_observations``); ``"off"`` encodes the
            sampled observations; ``"auto"`` = ``"grid"`` when the dataset is deterministic, the
            run would encode more observations than the grid holds
            (:func:`planned_observations`) and the grid's codes fit in 2 GiB, else ``"off"``.
            The random stream and the numbers are the same in all three modes.

    Returns:
        ``{"metrics": {name: result dict}, "config": {...}, "versions": {...},
        "timings_s": {...}, "encoder": {"calls", "observations", "code_cache",
        "planned_observations"}}``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if protocol not in ("dlib", "disdiff", "fdae"):
        raise ValueError(f"unknown protocol {protocol!r}; use 'dlib', 'disdiff' or 'fdae'")
    if protocol != "dlib" and groups is None:
        raise ValueError(f"protocol {protocol!r} needs `groups` (code dimensions of each concept)")
    if code_cache not in ("auto", "grid", "off"):
        raise ValueError(f"unknown code_cache {code_cache!r}; use 'auto', 'grid' or 'off'")
    metrics = list(metrics)
    # Fail before any encoding (the grid cache may take minutes) on a misspelt metric.
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {unknown}; known: {', '.join(METRICS.names())} (array-level "
            "attribute metrics such as tad run through disentkit.metrics.evaluate_attributes)"
        )
    outside = [m for m in metrics if protocol == "fdae" and m not in FDAE_METRICS]
    if outside:
        from disentkit.errors import ConfigError

        raise ConfigError(f"metric(s) {outside} are not part of the FDAE protocol; choose from "
                          f"{', '.join(FDAE_METRICS)}")
    stray = sorted(k for k in (params or {}) if k not in METRICS)
    if stray:
        raise ValueError(f"params given for unknown metric(s) {stray}; known: {', '.join(METRICS.names())}")
    constant = [n for n, size in zip(ground_truth_data.factor_names,
                                     ground_truth_data.factors_num_values) if size < 2]
    if constant:
        # Mutual information, classifiers and variances are undefined on a factor that never
        # changes (DCI's boosted trees refuse a single class), so say it before any encoding.
        from disentkit.errors import UnscorableDataError

        raise UnscorableDataError(
            f"factor {', '.join(repr(n) for n in constant)} of dataset "
            f"'{getattr(ground_truth_data, 'name', 'ground_truth')}' takes a single value; the "
            "disentanglement metrics need every factor to take at least 2 values (e.g. "
            "data.orientations=2), or use eval.metrics=[]")
    counting = _Counting(representation_function)
    rep: Any = counting
    config: dict[str, Any] = {"seed": seed, "preset": preset, "protocol": protocol,
                              "encode_batch_size": encode_batch_size, "params": {}}
    timings: dict[str, float] = {}
    planned = planned_observations(metrics, ground_truth_data.num_factors, preset, params,
                                   share_codes)
    if protocol == "disdiff":
        planned += len(ground_truth_data) if disdiff_fit_points is None else disdiff_fit_points
    use_grid = code_cache == "grid" or (
        code_cache == "auto"
        and bool(getattr(ground_truth_data, "deterministic_observations", False))
        and planned > len(ground_truth_data)
    )
    if use_grid:
        t0 = time.perf_counter()
        grid = GridCodes(ground_truth_data, counting, encode_batch_size,
                         max_bytes=GRID_CACHE_MAX_BYTES if code_cache == "auto" else None)
        say(f"eval: encoding all {len(ground_truth_data):,} images of the factor grid once")
        try:
            grid.encode()
        except GridCacheTooLarge:
            use_grid = False
            say("eval: the grid's codes would not fit in memory; each metric encodes its own sample")
        else:
            ground_truth_data, rep = grid.index_data(), grid.lookup
            say(f"eval: grid encoded in {duration(time.perf_counter() - t0)}")
        timings["grid_encode"] = time.perf_counter() - t0
    config["code_cache"] = "grid" if use_grid else "off"
    fdae_dims = 0
    if protocol == "disdiff":
        t0 = time.perf_counter()
        say(f"eval: fitting DisDiff's per-group PCA on the codes of "
            f"{len(ground_truth_data) if disdiff_fit_points is None else disdiff_fit_points:,} images")
        if disdiff_fit_points is None:
            n = len(ground_truth_data)
            fit_codes = np.concatenate([
                encode_observations(
                    rep,
                    ground_truth_data.sample_observations_from_factors(
                        ground_truth_data.index_to_factors(np.arange(s, min(s + 4096, n))),
                        np.random.RandomState(seed)),
                    encode_batch_size)
                for s in range(0, n, 4096)
            ])
        else:
            obs = ground_truth_data.sample_observations(disdiff_fit_points, np.random.RandomState(seed))
            fit_codes = encode_observations(rep, obs, encode_batch_size)
        reducer = GroupReducer(fit_codes, groups, 1)
        rep = _Reduced(rep, reducer)
        config["groups"] = [g.tolist() for g in reducer.groups]
        config["disdiff_fit_points"] = len(fit_codes)
        timings["disdiff_pca_fit"] = time.perf_counter() - t0
    elif protocol == "fdae":
        group_list = normalize_groups(groups)
        fdae_dims = group_dims if group_dims is not None else max(1, 36 // len(group_list))
        config["groups"] = [g.tolist() for g in group_list]
        config["group_dims"] = fdae_dims
    cache = CodeCache(ground_truth_data, rep, encode_batch_size) if share_codes else None
    results: dict[str, Any] = {}
    for number, name in enumerate(metrics, 1):
        say(f"eval: {name} ({number}/{len(metrics)}) ...")
        encoded_before = counting.observations
        fn = METRICS.get(name)
        decl = declaration(name)
        p = _metric_params(name, preset, params)
        if decl.parallel and "n_jobs" not in p:
            p["n_jobs"] = n_jobs
        config["params"][name] = copy.deepcopy(p)
        t0 = time.perf_counter()
        if decl.shared_code and (cache is not None or protocol == "fdae"):
            batch = p.get("batch_size", 16)
            sizes = decl.draw_sizes(**p)
            if cache is not None:
                draws, rs_after = cache.draws(seed, sizes, batch)
            else:
                rs_after = np.random.RandomState(seed)
                from disentkit.metrics.sampling import sample_codes

                draws = [sample_codes(ground_truth_data, rep, n, rs_after, batch, encode_batch_size)
                         for n in sizes]
            score_params = {k: v for k, v in p.items() if k not in ("num_train", "num_test", "batch_size")}
            if protocol == "fdae":
                results[name] = _fdae_score_shared(decl, draws, rs_after, score_params,
                                                   groups, fdae_dims)
            else:
                results[name] = decl.score_draws(draws, rs_after, **score_params)
        else:
            if protocol == "fdae":
                if decl.fdae == "fit_transform":
                    p["fit_transform"] = lambda codes: GroupReducer(codes, groups, fdae_dims)
                else:
                    raise ValueError(f"metric {name!r} is not part of the FDAE protocol")
            results[name] = fn(ground_truth_data, rep, np.random.RandomState(seed),
                               encode_batch_size=encode_batch_size, **p)
            p.pop("fit_transform", None)
        timings[name] = time.perf_counter() - t0
        say(f"eval: {name} done in {duration(timings[name])}, "
            f"{_encoded(counting.observations - encoded_before)}")
    return {
        "metrics": results,
        "config": config,
        "versions": library_versions(),
        "timings_s": timings,
        "encoder": {"calls": counting.calls, "observations": counting.observations,
                    "code_cache": config["code_cache"], "planned_observations": planned},
    }


def _encoded(count: int) -> str:
    return f"{count:,} images encoded" if count else "codes from the cache (no images encoded)"


class _Reduced:
    """representation -> per-group PCA (DisDiff protocol)."""

    def __init__(self, fn: Any, reducer: GroupReducer) -> None:
        self.fn = fn
        self.reducer = reducer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from disentkit.metrics.utils import as_numpy

        return self.reducer(as_numpy(self.fn(x))).astype(np.float32)
