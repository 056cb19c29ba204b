"""The sampling layer: dlib's random stream, large encoder batches (dlib ``evaluation/metrics/utils.py``).

dlib draws (factors, observations) in *sampling chunks* (16 points for the
``generate_batch_factor_code`` metrics, one 64-image vote for FactorVAE/BetaVAE) and calls the
representation function on each chunk. The chunk size shapes the random stream, the encoder batch
does not. Here every chunk is still drawn with ``ground_truth_data.sample`` /
``sample_factors`` / ``sample_observations_from_factors`` in dlib's exact order (so data sets that
draw observation noise from ``random_state`` stay exact), but the observations are queued and
encoded ``encode_batch_size`` at a time by :class:`BatchEncoder`.

A *representation function* is any callable ``float32 (n, H, W, C) in [0, 1] -> (n, D)`` codes,
numpy or torch; :func:`representation_from_model` wraps a model with an ``encode`` method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from disentkit.metrics.utils import as_numpy

__all__ = [
    "BatchEncoder",
    "CodeCache",
    "RepresentationFunction",
    "call_representation",
    "chunk_plan",
    "encode_observations",
    "representation_from_model",
    "sample_codes",
]

RepresentationFunction = Callable[[np.ndarray], Any]

#: default number of observations per representation-function call in the fast paths.
DEFAULT_ENCODE_BATCH = 1024


def call_representation(representation_function: RepresentationFunction, observations: np.ndarray
                        ) -> np.ndarray:
    """One representation call on ``observations``; its codes as numpy, checked to be (n, D)."""
    codes = as_numpy(representation_function(observations))
    if codes.ndim != 2 or codes.shape[0] != len(observations):
        raise ValueError(
            f"the representation function must return (n, D) codes for n={len(observations)} "
            f"observations, got shape {codes.shape}"
        )
    return codes


class BatchEncoder:
    """Queue observations, call the representation function on large batches, keep the order.

    ``push`` any number of observations; ``result()`` flushes and returns the (total, D) codes in
    push order. Codes are returned as produced (dtype of the representation function's output).
    """

    def __init__(
        self, representation_function: RepresentationFunction, encode_batch_size: int = DEFAULT_ENCODE_BATCH
    ) -> None:
        if encode_batch_size < 1:
            raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
        self.representation_function = representation_function
        self.encode_batch_size = int(encode_batch_size)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._codes: list[np.ndarray] = []
        self.num_calls = 0

    def push(self, observations: np.ndarray) -> None:
        self._pending.append(observations)
        self._pending_n += len(observations)
        while self._pending_n >= self.encode_batch_size:
            self._encode(self.encode_batch_size)

    def _encode(self, n: int) -> None:
        batch = np.concatenate(self._pending, axis=0) if len(self._pending) > 1 else self._pending[0]
        head, rest = batch[:n], batch[n:]
        codes = call_representation(self.representation_function, head)
        self.num_calls += 1
        self._codes.append(codes)
        self._pending = [rest] if len(rest) else []
        self._pending_n = len(rest)

    def result(self) -> np.ndarray:
        if self._pending_n:
            self._encode(self._pending_n)
        if not self._codes:
            raise ValueError("no observations were encoded")
        out = np.concatenate(self._codes, axis=0) if len(self._codes) > 1 else self._codes[0]
        self._codes = [out]
        return out


def encode_observations(
    representation_function: RepresentationFunction,
    observations: np.ndarray,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> np.ndarray:
    """Codes (n, D) of ``observations``, ``encode_batch_size`` per representation call."""
    encoder = BatchEncoder(representation_function, encode_batch_size)
    for start in range(0, len(observations), encode_batch_size):
        encoder.push(observations[start : start + encode_batch_size])
    return encoder.result()


def chunk_plan(num_points: int, batch_size: int) -> list[int]:
    """dlib's sampling chunks for ``num_points``: ``batch_size`` each, the remainder last."""
    if num_points < 0 or batch_size < 1:
        raise ValueError(f"need num_points >= 0 and batch_size >= 1, got {num_points}, {batch_size}")
    full, rest = divmod(num_points, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def sample_codes(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    num_points: int,
    random_state: np.random.RandomState,
    batch_size: int = 16,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """dlib's ``generate_batch_factor_code``, points first: returns codes (N, D), factors (N, K).

    Draws ``ground_truth_data.sample(chunk, random_state)`` for chunks of ``batch_size`` (dlib's
    sampling chunk, 16 for MIG/SAP/DCI/Modularity/Unsupervised/IRS in their gin files) and encodes
    ``encode_batch_size`` observations per representation call, which does not touch the stream.
    """
    encoder = BatchEncoder(representation_function, encode_batch_size)
    factors = []
    for size in chunk_plan(num_points, batch_size):
        f, obs = ground_truth_data.sample(size, random_state)
        factors.append(np.asarray(f))
        encoder.push(obs)
    if not factors:
        raise ValueError("sample_codes needs num_points >= 1")
    return encoder.result(), np.concatenate(factors, axis=0)


def sample_draws(
    ground_truth_data: Any,
    representation_function: RepresentationFunction,
    sizes: list[int] | tuple[int, ...],
    random_state: np.random.RandomState,
    batch_size: int = 16,
    encode_batch_size: int = DEFAULT_ENCODE_BATCH,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive :func:`sample_codes` draws from one stream (dlib's train-then-test order)."""
    return [
        sample_codes(ground_truth_data, representation_function, n, random_state, batch_size,
                     encode_batch_size)
        for n in sizes
    ]


class CodeCache:
    """Share ``sample_codes`` draws across metrics that replay the same random stream.

    dlib's MIG, SAP, DCI, Modularity, Unsupervised and IRS each start from a fresh
    ``RandomState(seed)`` and draw ``num_train`` then (some) ``num_test`` points in chunks of 16.
    The stream is a pure function of (seed, sequence of chunk sizes), so a draw whose chunk
    sequence is a prefix of one already made is read from the cache, and a longer one resumes
    from the saved generator state at the end of the longest shared prefix. Results are exactly
    what a fresh draw gives (tested); the representation is called far fewer times.
    """

    def __init__(
        self,
        ground_truth_data: Any,
        representation_function: RepresentationFunction,
        encode_batch_size: int = DEFAULT_ENCODE_BATCH,
    ) -> None:
        self.data = ground_truth_data
        self.representation_function = representation_function
        self.encode_batch_size = encode_batch_size
        # per seed: list of chunk sizes drawn, boundaries, generator states, codes, factors
        self._store: dict[int, dict[str, Any]] = {}
        self.num_encoded = 0
        self.num_calls = 0

    def draws(
        self, seed: int, sizes: Sequence[int], batch_size: int = 16
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.random.RandomState]:
        """(codes, factors) of each consecutive draw ``sizes`` from a fresh ``RandomState(seed)``.

        Also returns a generator positioned where the metric's own stream would be afterwards.
        """
        plan: list[int] = []
        bounds = []
        for n in sizes:
            plan += chunk_plan(int(n), batch_size)
            bounds.append(sum(plan))
        entry = self._store.get(seed)
        if entry is None:
            rs = np.random.RandomState(seed)
            entry = {"plan": [], "states": [rs.get_state()], "codes": [], "factors": []}
            self._store[seed] = entry
        shared = 0
        while shared < min(len(plan), len(entry["plan"])) and plan[shared] == entry["plan"][shared]:
            shared += 1
        if shared < len(plan):
            # Resume the stream at the end of the shared prefix; drop the diverging tail.
            rs = np.random.RandomState()
            rs.set_state(entry["states"][shared])
            del entry["plan"][shared:], entry["states"][shared + 1 :]
            del entry["codes"][shared:], entry["factors"][shared:]
            encoder = BatchEncoder(self.representation_function, self.encode_batch_size)
            new_factors = []
            for size in plan[shared:]:
                f, obs = self.data.sample(size, rs)
                new_factors.append(np.asarray(f))
                encoder.push(obs)
                entry["plan"].append(size)
                entry["states"].append(rs.get_state())
            codes = encoder.result()
            self.num_encoded += len(codes)
            self.num_calls += encoder.num_calls
            start = 0
            for f in new_factors:
                entry["codes"].append(codes[start : start + len(f)])
                entry["factors"].append(f)
                start += len(f)
        out = []
        begin = 0
        chunk_starts = np.concatenate([[0], np.cumsum(entry["plan"])])
        for end in bounds:
            lo = int(np.searchsorted(chunk_starts, begin))
            hi = int(np.searchsorted(chunk_starts, end))
            out.append(
                (np.concatenate(entry["codes"][lo:hi]), np.concatenate(entry["factors"][lo:hi]))
            )
            begin = end
        after = np.random.RandomState()
        after.set_state(entry["states"][len(plan)])
        return out, after


def representation_from_model(
    model: Any,
    device: Any = None,
    batch_size: int | None = None,
    method: str = "encode",
    output_index: int = 0,
    sampled: bool = False,
    sample_seed: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a torch model into a representation function (float32 NHWC [0, 1] -> numpy (n, D)).

    ``sampled=True`` gives dlib's second post-processed representation (the study's
    ``sampled.gin``): one reparameterised sample ``mean + exp(logvar / 2) * eps`` per call, from
    ``model.posterior(x) -> (mean, logvar)`` (``method`` is ignored), with ``eps`` drawn from a
    private ``torch.Generator`` seeded with ``sample_seed`` (global RNGs untouched). As in dlib
    every call draws fresh noise, so the codes depend on the call order: do not serve such a
    representation from a grid code cache (``evaluate(..., code_cache="off")``).

    The wrapper converts NHWC numpy to an NCHW float32 tensor on ``device`` (default: the
    device of the model's first parameter, else CPU) in the model's pixel range
    (``input_range``: [-1, 1] for diffusion models, :mod:`disentkit.pixels`), calls
    ``getattr(model, method)`` under ``torch.no_grad()`` in slices of ``batch_size``, and
    returns numpy codes. ``batch_size=None``:
    64 on CPU (one torch thread ran the dlib conv encoder ~3x faster per image at 16-128 images
    per forward than at 512-1024 on the 2-core benchmark machine,
    benchmarks/results/metrics_encoder_batch.json), 512 on accelerators. If the method
    returns a tuple/list (e.g. ``(mean, logvar)``) element ``output_index`` is used; a dict must
    hold ``"mean"`` or ``"z"``. The model is switched to eval mode while encoding and restored.
    A model without a representation (a pixel DDPM) raises
    :class:`~disentkit.models.base.NoRepresentationError`.
    """
    import torch

    from disentkit.models.base import require_representation
    from disentkit.pixels import for_model

    require_representation(model)
    if sampled and not callable(getattr(model, "posterior", None)):
        raise ValueError(
            f"sampled=True needs a model with posterior(x) -> (mean, logvar); "
            f"{type(model).__name__} has none. Use the mean representation (sampled=False)."
        )
    fn = getattr(model, "posterior" if sampled else method)
    if device is None:
        try:
            device = next(model.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
    device = torch.device(device)
    if batch_size is None:
        batch_size = 64 if device.type == "cpu" else 512
    generator = None
    if sampled:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(sample_seed))

    def _sample(out: Any) -> Any:
        mean, logvar = out[0], out[1]
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(logvar / 2) * eps

    def _select(out: Any) -> Any:
        if isinstance(out, tuple | list):
            return out[output_index]
        if isinstance(out, dict):
            for key in ("mean", "z"):
                if key in out:
                    return out[key]
            raise KeyError(f"{method}() returned a dict without 'mean' or 'z': {sorted(out)}")
        return out

    def representation(observations: np.ndarray) -> np.ndarray:
        was_training = bool(getattr(model, "training", False))
        if hasattr(model, "eval"):
            model.eval()
        try:
            parts = []
            with torch.no_grad():
                for start in range(0, len(observations), batch_size):
                    x = torch.from_numpy(np.ascontiguousarray(observations[start : start + batch_size]))
                    x = x.to(device=device, dtype=torch.float32).permute(0, 3, 1, 2).contiguous()
                    x = for_model(x, model)  # the range the model trained on
                    z = _sample(fn(x)) if sampled else _select(fn(x))
                    parts.append(z.reshape(z.shape[0], -1).float().cpu().numpy())
        finally:
            if was_training and hasattr(model, "train"):
                model.train()
        return np.concatenate(parts, axis=0)

    return representation
