"""Trained linear probes on frozen codes: DiTi's CelebA attribute and LFW regression protocols.

These are the protocols of DiTi (Yue et al., ICLR 2024; ``yue-zhongqi/diti``,
``eval/multitask_classification.py`` and ``eval/attribute_regression.py``), written as pure
functions on code arrays (the encoder is frozen, so a probe only ever sees its codes):

* :func:`linear_probe_ap` -- ``Linear(D, A)``, ``BCEWithLogits``, Adam 1e-3, 15 epochs, batch 128,
  the training rows in index order (DiTi's loader is not shuffled; ``shuffle=True`` offers the
  shuffled variant), horizontal-flip augmentation as a per-row, per-epoch coin between the codes
  of the image and of its mirror image (``codes_train_flipped``); after every epoch the mean
  average precision on the validation rows, the epoch with the best one is kept (ties keep the
  earlier epoch), and its mean test AP and per-attribute APs are reported.
* :func:`linear_probe_regression` -- ``Linear(D, T)``, MSE, Adam 1e-3, 15 epochs, batch 64,
  shuffled; per-epoch test mean Pearson r and mean MSE. DiTi keeps the epoch with the best *test*
  r (``select_on="test"``, the reference-compatible mode); the default ``select_on="valid"`` picks
  it on validation rows instead (the last ``valid_fraction`` of the training rows when no
  validation rows are given), so the reported test score is not chosen on the test set.

The codes are used as they are (DiTi does not standardise them); ``standardise=True`` scales them
with the training mean/std first. All randomness (initialisation, shuffling, flips) comes from one
``torch.Generator`` seeded with ``seed``: the same inputs give the same result, and torch's
global generator is left untouched. The closed-form probes of :mod:`disentkit.metrics.attributes`
stay the fast option.

In :func:`~disentkit.metrics.evaluate_attributes` (``disentkit eval RUN --probe linear`` or
``--metrics linear_probe_ap linear_probe_regression``) the rows come in the data set's index order
(:func:`probe_split`): the held-out part at the end (CelebA: the official test partition), the
validation rows just before it (CelebA: the official valid partition), the training rows before
those; the flip codes are those of the mirrored training images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from disentkit.errors import ConfigError
from disentkit.metrics.declare import declare_metric

__all__ = ["LINEAR_PROBES", "average_precisions", "linear_probe_ap", "linear_probe_regression",
           "pearson_r", "probe_split", "run_linear_probe"]

#: the trained probes :func:`~disentkit.metrics.evaluate_attributes` scores with these functions
LINEAR_PROBES = ("linear_probe_ap", "linear_probe_regression")
#: size of the aligned CelebA set, its official valid and test partitions (list_eval_partition.txt)
CELEBA_SIZE, CELEBA_VALID, CELEBA_TEST = 202599, 19867, 19962

_AP_SETTINGS = {"epochs": 15, "batch_size": 128, "lr": 1e-3, "shuffle": False, "flip": True}
_REGRESSION_SETTINGS = {"epochs": 15, "batch_size": 64, "lr": 1e-3, "shuffle": True, "select_on": "valid"}


def _tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def _linear(dim_in: int, dim_out: int, generator: torch.Generator) -> torch.nn.Linear:
    """``nn.Linear`` initialised like torch's default (U(+-1/sqrt(fan_in))) from ``generator``."""
    layer = torch.nn.utils.skip_init(torch.nn.Linear, dim_in, dim_out)  # no global-RNG draw
    bound = 1.0 / math.sqrt(dim_in) if dim_in else 0.0
    with torch.no_grad():
        for param in (layer.weight, layer.bias):
            param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)
    return layer


def average_precisions(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(A,) average precision per column; NaN where a column has no positive or no negative."""
    y = (np.asarray(labels) > 0).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(y.shape[1], np.nan)
    for a in range(y.shape[1]):
        if 0 < y[:, a].sum() < len(y):
            out[a] = average_precision_score(y[:, a], scores[:, a])
    return out


def pearson_r(targets: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """(T,) Pearson correlation per column; NaN where either column is constant."""
    t = np.asarray(targets, np.float64)
    p = np.asarray(predictions, np.float64)
    tc, pc = t - t.mean(axis=0), p - p.mean(axis=0)
    denominator = np.sqrt((tc**2).sum(axis=0) * (pc**2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (tc * pc).sum(axis=0) / denominator, np.nan)


def _mean(values: np.ndarray) -> float:
    finite = np.asarray(values)[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _fit(
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    shuffle: bool,
    generator: torch.Generator,
    x_flipped: torch.Tensor | None,
    after_epoch: Callable[[torch.nn.Linear], None],
) -> None:
    """Adam on a fresh ``Linear``; ``after_epoch(probe)`` is called once per epoch."""
    probe = _linear(x.shape[1], y.shape[1], generator)
    optimiser = torch.optim.Adam(probe.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
        inputs = x
        if x_flipped is not None:  # RandomHorizontalFlip: each row mirrored with probability 1/2
            mirror = torch.rand(len(x), generator=generator) < 0.5
            inputs = torch.where(mirror[:, None], x_flipped, x)
        probe.train()
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            optimiser.zero_grad()
            loss_fn(probe(inputs[rows]), y[rows]).backward()
            optimiser.step()
        probe.eval()
        after_epoch(probe)


def _predict(probe: torch.nn.Linear, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return probe(x).double().numpy()


def _standardiser(train: np.ndarray, enabled: bool) -> Callable[[np.ndarray], torch.Tensor]:
    if not enabled:
        return _tensor
    mean = train.mean(axis=0)
    std = np.where(train.std(axis=0) > 0, train.std(axis=0), 1.0)
    return lambda codes: _tensor((np.asarray(codes, np.float64) - mean) / std)


def _check_rows(name: str, codes: np.ndarray, labels: np.ndarray, dim: int | None = None) -> None:
    if codes.ndim != 2 or labels.ndim != 2 or len(codes) != len(labels):
        raise ConfigError(
            f"{name}: expected codes (N, D) and labels (N, A) with the same N, found "
            f"{codes.shape} and {labels.shape}; pass one label row per code row")
    if len(codes) == 0:
        raise ConfigError(f"{name}: expected at least one row, found none; use a larger split")
    if dim is not None and codes.shape[1] != dim:
        raise ConfigError(f"{name}: expected {dim} code dimensions like the training rows, found "
                          f"{codes.shape[1]}")


@declare_metric(
    "linear_probe_ap", headline="mean_ap", order=112, kind="attributes",
    presets={"study": {"num_train": None, "num_valid": None, "num_test": None, **_AP_SETTINGS},
             "fast": {"num_train": 2000, "num_valid": None, "num_test": 1000, **_AP_SETTINGS}},
)
def linear_probe_ap(
    codes_train: np.ndarray,
    labels_train: np.ndarray,
    codes_valid: np.ndarray,
    labels_valid: np.ndarray,
    codes_test: np.ndarray,
    labels_test: np.ndarray,
    *,
    codes_train_flipped: np.ndarray | None = None,
    epochs: int = 15,
    batch_size: int = 128,
    lr: float = 1e-3,
    shuffle: bool = False,
    standardise: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """DiTi's CelebA attribute probe (module docstring); binary labels are ``> 0`` (±1 or 0/1).

    Returns ``mean_ap`` (test, at the chosen epoch), ``ap_per_attribute``, ``best_epoch``
    (0-based), ``valid_mean_ap_per_epoch`` and ``test_mean_ap_per_epoch``. Attributes whose AP is
    undefined on a split (no positive or no negative there) are NaN and left out of the means.
    """
    codes_train, labels_train = np.asarray(codes_train), np.asarray(labels_train)
    _check_rows("linear_probe_ap (train)", codes_train, labels_train)
    dim = codes_train.shape[1]
    for split, codes, labels in (("valid", codes_valid, labels_valid), ("test", codes_test, labels_test)):
        _check_rows(f"linear_probe_ap ({split})", np.asarray(codes), np.asarray(labels), dim)
    if codes_train_flipped is not None and np.shape(codes_train_flipped) != codes_train.shape:
        raise ConfigError(f"linear_probe_ap: codes_train_flipped must match the training codes "
                          f"{codes_train.shape}, found {np.shape(codes_train_flipped)}")
    as_input = _standardiser(codes_train, standardise)
    x_valid, x_test = as_input(codes_valid), as_input(codes_test)
    history: dict[str, list] = {"valid": [], "test": [], "test_ap": []}

    def evaluate(probe: torch.nn.Linear) -> None:
        history["valid"].append(_mean(average_precisions(labels_valid, _predict(probe, x_valid))))
        aps = average_precisions(labels_test, _predict(probe, x_test))
        history["test_ap"].append(aps)
        history["test"].append(_mean(aps))

    bce = torch.nn.BCEWithLogitsLoss()
    _fit(as_input(codes_train), _tensor(np.asarray(labels_train) > 0), bce, epochs=epochs,
         batch_size=batch_size, lr=lr, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
         x_flipped=None if codes_train_flipped is None else as_input(codes_train_flipped),
         after_epoch=evaluate)
    best = _best_epoch(history["valid"])
    return {"mean_ap": history["test"][best], "ap_per_attribute": history["test_ap"][best],
            "best_epoch": best, "valid_mean_ap_per_epoch": history["valid"],
            "test_mean_ap_per_epoch": history["test"], "epochs": epochs}


def _best_epoch(scores: list[float]) -> int:
    """The first epoch with the highest score (NaN scores never win)."""
    values = np.where(np.isfinite(scores), scores, -np.inf)
    return int(np.argmax(values))


def _labelled(codes: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isnan(targets).any(axis=1)
    return codes[keep], targets[keep]


@declare_metric(
    "linear_probe_regression", headline="mean_pearson_r", order=122, kind="attributes",
    presets={"study": {"num_train": None, "num_valid": None, "num_test": None, **_REGRESSION_SETTINGS},
             "fast": {"num_train": 2000, "num_valid": None, "num_test": 1000, **_REGRESSION_SETTINGS}},
)
def linear_probe_regression(
    codes_train: np.ndarray,
    targets_train: np.ndarray,
    codes_test: np.ndarray,
    targets_test: np.ndarray,
    *,
    codes_valid: np.ndarray | None = None,
    targets_valid: np.ndarray | None = None,
    select_on: str = "valid",
    valid_fraction: float = 0.1,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    shuffle: bool = True,
    standardise: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """DiTi's LFW attribute regression (module docstring); rows with NaN targets are left out.

    Returns ``mean_pearson_r`` and ``mean_mse`` (test, at the chosen epoch), ``pearson_r`` and
    ``mse`` per target, ``best_epoch``, ``select_on``, and the per-epoch test lists
    ``test_mean_pearson_r_per_epoch`` / ``test_mean_mse_per_epoch`` (DiTi's log); in ``valid``
    mode also ``valid_mean_pearson_r_per_epoch``.
    """
    if select_on not in ("valid", "test"):
        raise ConfigError(f"linear_probe_regression: select_on must be 'valid' or 'test', got "
                          f"{str(select_on)[:40]!r}")
    x_tr, t_tr = _labelled(np.asarray(codes_train, np.float64), _as_2d(targets_train))
    x_te, t_te = _labelled(np.asarray(codes_test, np.float64), _as_2d(targets_test))
    if select_on == "valid":
        if codes_valid is None or targets_valid is None:
            n_valid = max(1, int(round(valid_fraction * len(x_tr))))
            x_tr, x_va, t_tr, t_va = x_tr[:-n_valid], x_tr[-n_valid:], t_tr[:-n_valid], t_tr[-n_valid:]
        else:
            x_va, t_va = _labelled(np.asarray(codes_valid, np.float64), _as_2d(targets_valid))
        if len(x_va) < 2 or len(x_tr) < 1:
            raise ConfigError(
                f"linear_probe_regression: validation selection needs >= 2 validation and >= 1 "
                f"training rows with targets, found {len(x_va)} and {len(x_tr)}; use more images or "
                "select_on='test' (disentkit eval --select-epoch-on test)")
    _check_rows("linear_probe_regression (train)", x_tr, t_tr)
    _check_rows("linear_probe_regression (test)", x_te, t_te, x_tr.shape[1])
    as_input = _standardiser(x_tr, standardise)
    x_test = as_input(x_te)
    x_valid = as_input(x_va) if select_on == "valid" else None
    history: dict[str, list] = {"r": [], "mse": [], "r_all": [], "mse_all": [], "valid": []}

    def evaluate(probe: torch.nn.Linear) -> None:
        pred = _predict(probe, x_test)
        r, mse = pearson_r(t_te, pred), ((pred - t_te) ** 2).mean(axis=0)
        history["r_all"].append(r)
        history["mse_all"].append(mse)
        history["r"].append(_mean(r))
        history["mse"].append(float(mse.mean()))
        if x_valid is not None:
            history["valid"].append(_mean(pearson_r(t_va, _predict(probe, x_valid))))

    _fit(as_input(x_tr), _tensor(t_tr), torch.nn.MSELoss(), epochs=epochs, batch_size=batch_size,
         lr=lr, shuffle=shuffle, generator=torch.Generator().manual_seed(seed), x_flipped=None,
         after_epoch=evaluate)
    best = _best_epoch(history["valid"] if select_on == "valid" else history["r"])
    result = {"mean_pearson_r": history["r"][best], "mean_mse": history["mse"][best],
              "pearson_r": history["r_all"][best], "mse": history["mse_all"][best],
              "best_epoch": best, "select_on": select_on, "epochs": epochs,
              "num_train": len(x_tr), "num_test": len(x_te),
              "test_mean_pearson_r_per_epoch": history["r"], "test_mean_mse_per_epoch": history["mse"]}
    if select_on == "valid":
        result.update(valid_mean_pearson_r_per_epoch=history["valid"], num_valid=len(x_va))
    return result


def _as_2d(targets: np.ndarray) -> np.ndarray:
    t = np.asarray(targets, np.float64)
    return t[:, None] if t.ndim == 1 else t


def probe_split(num_items: int, num_train: int | None, num_valid: int | None, num_test: int | None,
                name: str = "", partition: dict[str, np.ndarray] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """(fit indices, test indices, number of validation rows) of a data set in index order.

    The test part and the part before it are :func:`~disentkit.metrics.attribute_split`'s, or a
    data set's own ``partition`` (``{"train", "test"}`` indices, LFW's ``split: dev``) when
    ``num_train`` and ``num_test`` are not given; the validation rows are the last ``num_valid``
    of the fit part (the fit indices end with them). ``num_valid=None``: CelebA's official valid
    partition (19 867 images) for the full aligned CelebA with the default sizes, else a tenth of
    the fit part (at least 1).
    """
    from disentkit.metrics.attribute_suite import attribute_split

    if partition is not None and num_train is None and num_test is None:
        train, test = np.asarray(partition["train"]), np.asarray(partition["test"])
        if len(train) < 2 or len(test) < 1:
            raise ConfigError(f"linear probe split: {name}'s partition has {len(train)} training and "
                              f"{len(test)} test images; at least 2 and 1 are needed")
    else:
        train, test = attribute_split(num_items, num_train, num_test, name)
    if num_valid is None:
        official = name.startswith("celeba") and num_items == CELEBA_SIZE \
            and len(train) == CELEBA_SIZE - CELEBA_TEST
        num_valid = CELEBA_VALID if official else max(1, len(train) // 10)
    if not 1 <= num_valid < len(train):
        raise ConfigError(
            f"linear probe split: {len(train)} images precede the held-out ones, so num_valid must be "
            f"between 1 and {len(train) - 1}, got {num_valid}; lower it or raise --attr-train")
    return train, test, int(num_valid)


def run_linear_probe(metric: str, params: dict[str, Any], codes_fit: np.ndarray, labels_fit: np.ndarray,
                     codes_test: np.ndarray, labels_test: np.ndarray,
                     mirrored: Callable[[], np.ndarray] | None = None) -> dict[str, Any]:
    """Score ``metric`` (one of :data:`LINEAR_PROBES`) with the suite's parameters; the last
    ``params["num_valid"]`` fit rows are the validation rows. ``mirrored()`` returns the codes of
    the mirrored training rows (called only when ``params["flip"]``)."""
    p = dict(params)
    n_valid = int(p.pop("num_valid"))
    codes_tr, codes_va = codes_fit[:-n_valid], codes_fit[-n_valid:]
    labels_tr, labels_va = labels_fit[:-n_valid], labels_fit[-n_valid:]
    if metric == "linear_probe_ap":
        flip = p.pop("flip", False)
        return linear_probe_ap(codes_tr, labels_tr, codes_va, labels_va, codes_test, labels_test,
                               codes_train_flipped=mirrored() if flip and mirrored else None, **p)
    if p.get("select_on", "valid") == "test":  # the reference's mode: every fit row trains
        return linear_probe_regression(codes_fit, labels_fit, codes_test, labels_test, **p)
    return linear_probe_regression(codes_tr, labels_tr, codes_test, labels_test, codes_valid=codes_va,
                                   targets_valid=labels_va, **p)
