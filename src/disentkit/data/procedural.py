"""``sprites``: a procedural, dSprites-compatible generator (no download needed).

The factor grid, ordering and pixel format are those of the official dSprites file as
disentanglement_lib's ``dsprites_full`` uses it (``named_data.py``): factors
``shape`` (square, ellipse, heart), ``scale`` (linspace(0.5, 1, 6)), ``orientation``
(linspace(0, 2*pi, 40), so 0 and 2*pi are the same image), ``posX`` and ``posY``
(linspace(0, 1, 32) each), row-major with posY fastest; 64x64 binary images stored as {0, 1} uint8
with ``value_max = 1``.

Geometry: pixel (r, c) is on iff its centre (c + 0.5, r + 0.5) lies inside
the shape; the sprite centre is (16 + 32 posX, 16 + 32 posY) with posY = 0 at the top; the shape
is rotated by -theta in image coordinates (counter-clockwise on screen). The square has half-side
9.6 * scale. The ellipse and the heart are star-shaped outlines r(phi) * scale fitted to the real
images of colleenjg/neuromatch_ssl_tutorial (``benchmarks/data_fit_sprites.py``; table in
``_sprite_outlines.py``). The pixels are an approximation of dSprites, not the official file:
``docs/datasets.md`` records the measured IoU against real images. Use ``dsprites`` for the
official file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from disentkit.data import _sprite_outlines as outlines
from disentkit.data._grid import RenderedGrid
from disentkit.ranges import Count, NonNegInt
from disentkit.registry import DATASETS

SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
SQUARE_HALF_SIDE = 9.6
_RADII = {
    1: np.asarray(outlines.ELLIPSE_RADII, dtype=np.float64),
    2: np.asarray(outlines.HEART_RADII, dtype=np.float64),
}
_PIXEL_CENTRES = np.arange(64, dtype=np.float64) + 0.5
#: 2x2 area downsample of a {0,1} image: number of lit pixels (0..4) -> uint8 intensity.
_DOWNSAMPLE_LUT = np.array([0, 64, 128, 191, 255], dtype=np.uint8)


def render_sprites(
    shape: np.ndarray,
    scale: np.ndarray,
    orientation: np.ndarray,
    pos_x: np.ndarray,
    pos_y: np.ndarray,
    chunk: int = 512,
) -> np.ndarray:
    """Render dSprites-style binary images from factor *values*.

    ``shape`` holds class indices (0 square, 1 ellipse, 2 heart); the others are the physical
    values (scale in [0.5, 1], orientation in radians, positions in [0, 1]). Returns uint8
    (n, 64, 64) with values {0, 1}. Fully vectorised over images and pixels.
    """
    shape = np.asarray(shape, dtype=np.int64).reshape(-1)
    params = [np.asarray(a, dtype=np.float64).reshape(-1) for a in (scale, orientation, pos_x, pos_y)]
    n = len(shape)
    if any(len(p) != n for p in params):
        raise ValueError(f"render_sprites: all factor arrays need length {n}")
    if n and (shape.min() < 0 or shape.max() > 2):
        raise ValueError(f"render_sprites: shape must be 0, 1 or 2, got {np.unique(shape)}")
    out = np.empty((n, 64, 64), dtype=np.uint8)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        out[sl] = _render_chunk(shape[sl], *(p[sl] for p in params))
    return out


def area_downsample(images: np.ndarray) -> np.ndarray:
    """{0,1} uint8 (..., 64, 64) -> (..., 32, 32) uint8: each 2x2 block's lit-pixel count 0..4
    mapped to 0, 64, 128, 191, 255 (the ``image_size: 32`` pixels)."""
    counts = images.reshape(*images.shape[:-2], 32, 2, 32, 2).sum(axis=(-3, -1), dtype=np.int64)
    return _DOWNSAMPLE_LUT[counts]


def _render_chunk(
    shape: np.ndarray, scale: np.ndarray, theta: np.ndarray, pos_x: np.ndarray, pos_y: np.ndarray
) -> np.ndarray:
    dx = _PIXEL_CENTRES[None, None, :] - (16.0 + 32.0 * pos_x)[:, None, None]
    dy = _PIXEL_CENTRES[None, :, None] - (16.0 + 32.0 * pos_y)[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    # Sprite frame: rotating the shape by -theta in image coordinates means rotating the pixel
    # offsets by +theta.
    u = cos * dx - sin * dy
    v = sin * dx + cos * dy
    s = scale[:, None, None]
    inside = np.zeros(u.shape, dtype=bool)
    square = shape == 0
    if square.any():
        half = SQUARE_HALF_SIDE * s[square]
        inside[square] = (np.abs(u[square]) <= half) & (np.abs(v[square]) <= half)
    for index, radii in _RADII.items():
        rows = shape == index
        if not rows.any():
            continue
        uu, vv = u[rows], v[rows]
        position = (np.arctan2(vv, uu) % (2 * np.pi)) * (len(radii) / (2 * np.pi))
        lower = np.floor(position)
        frac = position - lower
        lower = lower.astype(np.int64) % len(radii)
        boundary = radii[lower] * (1 - frac) + radii[(lower + 1) % len(radii)] * frac
        inside[rows] = np.hypot(uu, vv) <= boundary * s[rows]
    return inside.view(np.uint8)


def _subgrid(values: np.ndarray, count: int, what: str) -> np.ndarray:
    full = len(values)
    if count < 1 or full % count:
        divisors = [d for d in range(1, full + 1) if full % d == 0]
        raise ValueError(
            f"sprites: {what} must divide {full} (an evenly spaced sub-grid of the dSprites "
            f"values), got {count}; allowed: {divisors}"
        )
    return values[:: full // count]


@DATASETS.register("sprites")
class ProceduralSprites(RenderedGrid):
    """Procedurally rendered dSprites grid (factors shape, scale, orientation, posX, posY).

    ``orientations`` and ``positions`` select an evenly spaced sub-grid starting at index 0
    (``orientations=10`` keeps every 4th angle and ``positions=16`` every 2nd position, the grid
    of the real ``dsprites_downsampled.npz``). Images are rendered on demand in vectorised
    batches; a grid of at most ``cache_mib`` MiB is kept in memory once rendered.
    """

    @dataclass
    class Config:
        #: 64: binary {0,1} images (value_max 1); 32: 2x2 area downsample -> 0..255 (value_max 255)
        image_size: Literal[64, 32] = 64
        #: number of orientations, a divisor of 40 (evenly spaced sub-grid from angle 0)
        orientations: Count = 40
        #: number of positions per axis, a divisor of 32 (evenly spaced sub-grid from 0)
        positions: Count = 32
        #: keep the rendered grid in memory when its uint8 size is at most this many MiB
        cache_mib: NonNegInt = 256

    name = "sprites"
    factor_names = ("shape", "scale", "orientation", "posX", "posY")

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        del data_root  # procedural: no files
        self.config = config = config if config is not None else self.Config()
        if config.image_size not in (32, 64):
            raise ValueError(f"sprites: image_size must be 64 or 32, got {config.image_size}")
        self.orientation_values = _subgrid(ORIENTATIONS, config.orientations, "orientations")
        self.position_values = _subgrid(POSITIONS, config.positions, "positions")
        self.factor_sizes = (3, 6, config.orientations, config.positions, config.positions)
        self.value_max = 1 if config.image_size == 64 else 255
        size = config.image_size
        self._setup_cache((size, size, 1), config.cache_mib)

    def factor_values(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Physical values (shape index, scale, radians, posX, posY) of factor class indices."""
        factors = np.asarray(factors, dtype=np.int64)
        return {
            "shape": factors[:, 0],
            "scale": SCALES[factors[:, 1]],
            "orientation": self.orientation_values[factors[:, 2]],
            "posX": self.position_values[factors[:, 3]],
            "posY": self.position_values[factors[:, 4]],
        }

    def render_indices(self, indices: np.ndarray) -> np.ndarray:
        """Render (without the cache) uint8 (n, H, W, 1) images for flat indices."""
        values = self.factor_values(self.index_to_factors(indices))
        images = render_sprites(
            values["shape"], values["scale"], values["orientation"], values["posX"], values["posY"]
        )
        if self.config.image_size == 32:
            images = area_downsample(images)
        return images[..., None]
