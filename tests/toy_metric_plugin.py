"""A toy metric declared in one place, as a user plugin would: its headline key, preset sizes,
shared-code use and FDAE form sit next to its definition (tests/test_metric_declarations.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from disentkit.metrics.declare import declare_metric
from disentkit.metrics.sampling import DEFAULT_ENCODE_BATCH, sample_codes


@declare_metric(
    "toy_spread", headline="spread", shared_code=True, fdae="reduced",
    presets={"study": {"num_train": 300, "batch_size": 10}, "fast": {"num_train": 40, "batch_size": 10}},
)
def toy_spread(ground_truth_data: Any, representation_function: Any,
               random_state: np.random.RandomState, num_train: int = 100, batch_size: int = 10,
               encode_batch_size: int = DEFAULT_ENCODE_BATCH) -> dict[str, Any]:
    """Mean per-code standard deviation of ``num_train`` sampled codes."""
    codes, factors = sample_codes(ground_truth_data, representation_function, num_train,
                                  random_state, batch_size, encode_batch_size)
    return score_draws([(codes, factors)], random_state)


def draw_sizes(num_train: int = 100, **_: Any) -> list[int]:
    return [num_train]


def score_draws(draws: list, random_state: np.random.RandomState, **_: Any) -> dict[str, Any]:
    (codes, _factors), = draws
    return {"spread": float(np.mean(np.std(codes, axis=0))), "num_points": len(codes),
            "num_codes": int(codes.shape[1])}
