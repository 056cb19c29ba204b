"""FDAE's views (Wu & Zheng, AAAI 2024; wuancong/FDAE ``conditional_image_sample.py``,
``image_sample.sh``): the N masks of each image side by side, code swaps between source and
target images as K x K grids, and traversals along the first PCA direction of a content code
(paper Fig. 6, not in the authors' code).

Code layout (``FDAE.encode``): ``[content_0 .. content_{N-1}, mask_0 .. mask_{N-1}]``, one group
of dimensions each, as listed by the model's ``code_groups()``.

Swap specs follow ``image_sample.sh``'s ``--factor_dim``: ``c1,2-m0`` = content codes 1 and 2,
no mask code; ``c0-m1,2`` = mask codes 1 and 2; concepts are numbered from 1 and 0 means none.
The grids follow ``disentkit swap``'s layout (:mod:`disentkit.viz.swaps`): row 0 shows the
sources, column 0 the targets, and cell (i, j) decodes target i's codes with the listed groups
taken from source j (the reference's ``swap_info`` keeps every code of one image and copies the
selected groups from the other; it calls the receiving image the source). Every cell of a grid
starts from the same noise, so the cells differ only by their codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentkit.errors import ConfigError, UserError
from disentkit.viz.images import data_batch, label_grid, make_grid, save_png, to_uint8
from disentkit.viz.latents import sample_indices

__all__ = [
    "NoMasksError",
    "SwapSpec",
    "concept_layout",
    "decode_with_shared_noise",
    "default_swap_specs",
    "fdae_swap_grids",
    "mask_strip_image",
    "mask_strips",
    "image_masks",
    "write_masks",
    "write_pca_traversals",
    "parse_swap_spec",
    "pca_direction",
    "pca_traversal_codes",
    "swap_grid_image",
    "swap_grid_tiles",
    "swapped_codes",
    "traversal_image",
    "traversal_values",
]

#: distinct colours of the concepts in the argmax column of the mask strips
CONCEPT_COLOURS = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
], dtype=np.uint8)


class NoMasksError(UserError, TypeError):
    """The run's model has no concept masks (``masks`` works on mask-based models such as FDAE)."""


def _model_name(model: Any) -> str:
    return str(getattr(model, "registry_name", type(model).__name__))[:40]


# ---- swap specs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwapSpec:
    """Which concepts a swap takes from the target: 0-based content and mask concept indices."""

    content: tuple[int, ...]
    mask: tuple[int, ...]

    @property
    def text(self) -> str:
        """The spec in ``image_sample.sh``'s notation (1-based, 0 = none), e.g. ``c1,2-m0``."""
        def part(letter: str, idx: tuple[int, ...]) -> str:
            return letter + (",".join(str(i + 1) for i in idx) if idx else "0")
        return f"{part('c', self.content)}-{part('m', self.mask)}"


def _spec_error(text: str, why: str) -> ConfigError:
    return ConfigError(f"swap spec {text[:40]!r}: {why}; expected e.g. 'c1,2-m0' (content codes 1 "
                       "and 2) or 'c0-m1' (mask code 1), concepts numbered from 1, 0 = none")


def parse_swap_spec(text: str, num_concepts: int) -> SwapSpec:
    """``"c1,2-m0"`` -> :class:`SwapSpec` for a model with ``num_concepts`` concepts.

    Either part may be left out (``"c3"`` = ``"c3-m0"``); a concept outside 1..N, a repeated
    concept, or a spec that selects nothing is a one-line :class:`ConfigError`.
    """
    raw = str(text).strip().replace(" ", "")
    if not raw:
        raise _spec_error(raw, "it is empty")
    parts: dict[str, tuple[int, ...]] = {}
    for piece in raw.split("-"):
        letter, numbers = piece[:1].lower(), piece[1:]
        if letter not in ("c", "m") or letter in parts or not numbers:
            raise _spec_error(raw, f"cannot read {piece[:12]!r}")
        try:
            values = [int(v) for v in numbers.split(",")]
        except ValueError:
            raise _spec_error(raw, f"{numbers[:12]!r} is not a list of concept numbers") from None
        if values == [0]:
            parts[letter] = ()
            continue
        bad = [v for v in values if not 1 <= v <= num_concepts]
        if bad:
            raise _spec_error(raw, f"concept {bad[0]} does not exist (this model has concepts "
                                   f"1..{num_concepts})")
        if len(set(values)) != len(values):
            raise _spec_error(raw, "a concept is listed twice")
        parts[letter] = tuple(v - 1 for v in values)
    spec = SwapSpec(parts.get("c", ()), parts.get("m", ()))
    if not spec.content and not spec.mask:
        raise _spec_error(raw, "it selects no code to swap")
    return spec


def default_swap_specs(num_concepts: int, partial: bool = False) -> list[SwapSpec]:
    """The grids ``disentkit swap`` draws without ``--swap``: all content codes, then (N > 1)
    all mask codes; ``partial`` adds one grid per single content and mask concept."""
    every = tuple(range(num_concepts))
    specs = [SwapSpec(every, ())]
    if num_concepts > 1:
        specs.append(SwapSpec((), every))
    if partial:
        specs += [SwapSpec((n,), ()) for n in every]
        if num_concepts > 1:
            specs += [SwapSpec((), (n,)) for n in every]
    return specs


def concept_layout(groups: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """(content groups, mask groups) of FDAE's ``code_groups()``: the first half are the N
    content codes, the second half the N mask codes."""
    groups = [list(g) for g in groups]
    if not groups or len(groups) % 2:
        raise ValueError(f"FDAE codes come in 2N groups (N content, N mask), got {len(groups)}")
    half = len(groups) // 2
    return groups[:half], groups[half:]


def swapped_codes(targets: torch.Tensor, sources: torch.Tensor, spec: SwapSpec,
                  groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """Codes (T, S, D): cell (i, j) = ``targets[i]`` with the spec's groups from ``sources[j]``."""
    content, mask = concept_layout(groups)
    if max([*spec.content, *spec.mask], default=-1) >= len(content):
        raise ConfigError(f"swap spec {spec.text!r} names a concept this model does not have "
                          f"(it has {len(content)})")
    cells = targets[:, None, :].expand(targets.shape[0], sources.shape[0], targets.shape[1]).clone()
    dims = [d for n in spec.content for d in content[n]] + [d for n in spec.mask for d in mask[n]]
    index = torch.as_tensor(dims, dtype=torch.long)
    cells[:, :, index] = sources[None, :, :].expand_as(cells)[:, :, index]
    return cells


def swap_grid_tiles(sources01: torch.Tensor, targets01: torch.Tensor,
                    cells01: torch.Tensor) -> np.ndarray:
    """uint8 tiles (T + 1, S + 1, H, W, 3): row 0 shows the sources, column 0 the targets,
    tile (i + 1, j + 1) = ``cells01[i, j]`` (T, S, C, H, W); the corner stays white."""
    t, s = cells01.shape[:2]
    if sources01.shape[0] != s or targets01.shape[0] != t:
        raise ValueError(f"cells {tuple(cells01.shape[:2])} do not match {t} targets and {s} sources")
    tiles = np.full((t + 1, s + 1, *to_uint8(cells01[0, 0]).shape), 255, np.uint8)
    tiles[0, 1:] = to_uint8(sources01)
    tiles[1:, 0] = to_uint8(targets01)
    tiles[1:, 1:] = to_uint8(cells01)
    return tiles


def swap_grid_image(sources01: torch.Tensor, targets01: torch.Tensor, cells01: torch.Tensor,
                    title: str | None = None) -> np.ndarray:
    """:func:`swap_grid_tiles` as one labelled uint8 (H, W, 3) image."""
    t, s = cells01.shape[:2]
    tiles = swap_grid_tiles(sources01, targets01, cells01)
    rows = ["sources", *[f"target {i + 1}" for i in range(t)]]
    cols = ["targets", *[f"s{j + 1}" for j in range(s)]]
    return np.array(label_grid(make_grid(tiles), rows, cols, title=title))


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _shared_noise(model: torch.nn.Module, count: int, image_shape: Sequence[int],
                  generator: torch.Generator | None) -> torch.Tensor:
    """One standard-normal noise image repeated ``count`` times (drawn on the CPU)."""
    noise = torch.randn((1, *image_shape), generator=generator)
    return noise.expand(count, *image_shape).contiguous().to(_model_device(model))


@torch.inference_mode()
def decode_with_shared_noise(model: Any, codes: torch.Tensor, steps: int | None,
                             generator: torch.Generator | None, batch_size: int = 64) -> torch.Tensor:
    """``model.decode`` of codes (..., D) from one shared noise image -> (..., C, H, W) in [0, 1]
    (converted from the model's pixel range)."""
    from disentkit.pixels import for_display

    lead, dim = codes.shape[:-1], codes.shape[-1]
    flat = codes.reshape(-1, dim).to(_model_device(model))
    shape = tuple(model.image_shape)
    noise = _shared_noise(model, flat.shape[0], shape, generator)
    out = [for_display(model.decode(flat[i:i + batch_size], noise=noise[i:i + batch_size], steps=steps,
                                    generator=generator).float().cpu(), model)
           for i in range(0, flat.shape[0], batch_size)]
    return torch.cat(out).clamp(0, 1).reshape(*lead, *shape)


@torch.inference_mode()
def fdae_swap_grids(model: Any, sources01: torch.Tensor, targets01: torch.Tensor, *,
                    spec: str | None = None, partial: bool = False, steps: int | None = None,
                    generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """FDAE's ``swap_grids``: {``swap_<spec>``: uint8 (H, W, 3) grid} of targets (rows) x sources
    (columns), each cell a target's codes with the spec's groups from a source.

    ``spec`` (``"c1,2-m0"``) draws one grid; without it :func:`default_swap_specs` (``partial``:
    one more grid per single concept). ``steps``: sampler steps (default: the model's).
    """
    groups = model.code_groups()
    num_concepts = len(groups) // 2
    specs = [parse_swap_spec(spec, num_concepts)] if spec else default_swap_specs(num_concepts, partial)
    from disentkit.viz.latents import encode_batched

    src = encode_batched(model, sources01.float().cpu())
    tgt = encode_batched(model, targets01.float().cpu())
    grids = {}
    for one in specs:
        cells = decode_with_shared_noise(model, swapped_codes(tgt, src, one, groups), steps, generator)
        title = f"{one.text}: {_swap_words(one)} from the source"
        grids[f"swap_{one.text}"] = swap_grid_image(sources01.cpu(), targets01.cpu(), cells, title)
    return grids


def _swap_words(spec: SwapSpec) -> str:
    words = []
    if spec.content:
        words.append("content " + ",".join(str(i + 1) for i in spec.content))
    if spec.mask:
        words.append("mask " + ",".join(str(i + 1) for i in spec.mask))
    return " and ".join(words)


# ---- masks --------------------------------------------------------------------------------------

def mask_strips(images01: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """uint8 tiles (B, N + 2, H, W, 3): the image, its N masks (white = 1) and an argmax map
    (each pixel in the colour of its most weighted concept, shaded by that weight)."""
    if masks.ndim != 4 or images01.ndim != 4 or masks.shape[0] != images01.shape[0]:
        raise ValueError(f"expected images (B, C, H, W) and masks (B, N, H, W) with the same B, got "
                         f"{tuple(images01.shape)} and {tuple(masks.shape)}")
    masks = masks.detach().float().cpu().clamp(0, 1)
    b, n, h, w = masks.shape
    images01 = images01.detach().float().cpu()
    if images01.shape[-2:] != (h, w):
        images01 = torch.nn.functional.interpolate(images01, size=(h, w), mode="nearest")
    tiles = np.empty((b, n + 2, h, w, 3), np.uint8)
    tiles[:, 0] = to_uint8(images01.clamp(0, 1))
    tiles[:, 1:n + 1] = to_uint8(masks[:, :, None])
    weight, winner = masks.max(dim=1)
    colours = CONCEPT_COLOURS[winner.numpy() % len(CONCEPT_COLOURS)].astype(np.float32)
    tiles[:, n + 1] = np.rint(colours * weight.numpy()[..., None]).astype(np.uint8)
    return tiles


def mask_strip_image(images01: torch.Tensor, masks: torch.Tensor,
                     names: Sequence[str] | None = None, title: str | None = None) -> np.ndarray:
    """The labelled grid of :func:`mask_strips`: one row per image, columns image, mask 1..N, argmax."""
    tiles = mask_strips(images01, masks)
    n = masks.shape[1]
    cols = ["image", *[f"mask {i + 1}" for i in range(n)], "argmax"]
    rows = list(names) if names is not None else [f"#{i + 1}" for i in range(tiles.shape[0])]
    return np.array(label_grid(make_grid(tiles), rows, cols, title=title))


# ---- PCA traversal ------------------------------------------------------------------------------

def pca_direction(group_codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean (d,), unit first principal direction (d,), scores (M,)) of codes (M, d).

    The direction's sign is fixed (its largest entry positive) so the traversal runs the same
    way for the same codes.
    """
    x = group_codes.detach().double().cpu()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 codes shaped (M, d) to find a PCA direction, got "
                         f"{tuple(x.shape)}")
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    direction = vh[0]
    if direction[direction.abs().argmax()] < 0:
        direction = -direction
    return mean.float(), direction.float(), ((x - mean) @ direction).float()


def pca_traversal_codes(codes: torch.Tensor, dims: Sequence[int], direction: torch.Tensor,
                        values: torch.Tensor) -> torch.Tensor:
    """Codes (B, S, D): each code's projection on ``direction`` (in ``dims``) set to each value,
    every other component of the group and every other group unchanged."""
    index = torch.as_tensor(list(dims), dtype=torch.long)
    direction = direction.to(codes)
    part = codes[:, index]
    current = part @ direction  # (B,)
    shift = values.to(codes)[None, :] - current[:, None]  # (B, S)
    out = codes[:, None, :].expand(codes.shape[0], values.shape[0], codes.shape[1]).clone()
    out[:, :, index] = part[:, None, :] + shift[..., None] * direction
    return out


def traversal_values(scores: torch.Tensor, steps: int = 7, tail: float = 0.05) -> torch.Tensor:
    """``steps`` values spanning the ``tail .. 1 - tail`` quantiles of the PCA scores."""
    levels = torch.linspace(tail, 1 - tail, steps)
    return torch.quantile(scores.float(), levels)


def traversal_image(images01: torch.Tensor, title: str | None = None,
                    row_names: Sequence[str] | None = None,
                    col_names: Sequence[str] | None = None) -> np.ndarray:
    """Decoded traversals (B, S, C, H, W) in [0, 1] as one labelled uint8 grid."""
    tiles = to_uint8(images01)
    return np.array(label_grid(make_grid(tiles), row_names, col_names, title=title))


def image_masks(model: Any, images01: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(B, N, H, W) concept masks of [0, 1] images (CPU float): ``masks_from_codes`` of the mask
    codes ``content_and_mask_codes`` gives; a model without them raises :class:`NoMasksError`."""
    if not (callable(getattr(model, "content_and_mask_codes", None))
            and callable(getattr(model, "masks_from_codes", None))):
        raise NoMasksError(f"model '{_model_name(model)}' has no concept masks; disentkit masks "
                           "needs a mask-based run such as fdae")
    from disentkit.pixels import for_model

    device = _model_device(model)
    out = []
    with torch.inference_mode():
        for i in range(0, images01.shape[0], batch_size):
            x = for_model(images01[i:i + batch_size].to(device), model)
            _, mask_codes = model.content_and_mask_codes(x)
            out.append(model.masks_from_codes(mask_codes).float().cpu())
    return torch.cat(out)


def _pick_indices(data: Any, num: int, indices: Sequence[int] | None, seed: int) -> np.ndarray:
    if indices is None:
        return sample_indices(len(data), num, seed)
    chosen = np.asarray(list(indices), dtype=np.int64)
    if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= len(data):
        raise ConfigError(f"image indices must lie in 0..{len(data) - 1} for this dataset, got "
                          f"{', '.join(str(i) for i in chosen[:5])}{' ...' if chosen.size > 5 else ''}")
    return chosen


def write_masks(model: Any, data: Any, out: str | Path, num: int = 8,
                indices: Sequence[int] | None = None, seed: int = 0) -> tuple[Path, int, int]:
    """Write the mask strips of ``num`` dataset images (or ``indices``) to ``out`` (PNG);
    returns (path, images, concepts)."""
    chosen = _pick_indices(data, num, indices, seed)
    images = data_batch(data, chosen)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        masks = image_masks(model, images)
    finally:
        model.train(was_training)
    names = [f"#{i}" for i in chosen]
    title = f"{masks.shape[1]} masks (white = 1)"
    path = save_png(mask_strip_image(images, masks, names, title), Path(out))
    return path, len(chosen), int(masks.shape[1])


def write_pca_traversals(model: Any, data: Any, out_dir: str | Path, *, concepts: Sequence[int] | None = None,
                         num_seeds: int = 3, steps: int = 7, fit_points: int = 256, seed: int = 0,
                         sampler_steps: int | None = None) -> list[Path]:
    """One PNG per content concept in ``out_dir``: ``num_seeds`` images (rows) whose content code
    moves along its first PCA direction (fitted on ``fit_points`` dataset images) through
    ``steps`` values spanning the 5-95 % quantiles of the PCA scores (columns), decoded from one
    shared noise image (paper Fig. 6). ``concepts``: 0-based content concepts (default all)."""
    from disentkit.viz.latents import encode_batched

    content, _ = concept_layout(model.code_groups())
    chosen = list(range(len(content))) if concepts is None else list(concepts)
    fit = data_batch(data, sample_indices(len(data), fit_points, seed))
    seeds = data_batch(data, sample_indices(len(data), num_seeds, seed + 1))
    was_training = getattr(model, "training", False)
    model.eval()
    paths = []
    try:
        fit_codes = encode_batched(model, fit)
        seed_codes = encode_batched(model, seeds)
        for n in chosen:
            dims = content[n]
            _, direction, scores = pca_direction(fit_codes[:, dims])
            values = traversal_values(scores, steps)
            codes = pca_traversal_codes(seed_codes, dims, direction, values)
            generator = torch.Generator().manual_seed(seed)
            images = decode_with_shared_noise(model, codes, sampler_steps, generator)
            grid = traversal_image(images, f"content code {n + 1} along its first PCA direction",
                                   [f"seed {i + 1}" for i in range(len(seed_codes))],
                                   [f"{v:+.2f}" for v in values.tolist()])
            paths.append(save_png(grid, Path(out_dir) / f"pca_content{n + 1}.png"))
    finally:
        model.train(was_training)
    return paths
