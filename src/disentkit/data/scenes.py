"""``shapes3d_like``: a procedural, colour 3D-Shapes-style scene grid (no download needed).

The factors, their order and (by default) their sizes are those of 3D Shapes
(deepmind/3d-shapes): ``floor_hue`` 10, ``wall_hue`` 10, ``object_hue`` 10,
``scale`` 8, ``shape`` 4 (cube, cylinder, sphere, capsule), ``orientation`` 15, row-major with
orientation fastest; 64x64x3 uint8 images with ``value_max`` 255. Factor values follow the
stored 3D Shapes values: hue ``k / n``, scale ``linspace(0.75, 1.25, n)``, orientation
``linspace(-30, 30, n)`` degrees (the camera azimuth, the real file's ``view-azi``).

The scene is ray cast with vectorised numpy: a square room (a floor plane and four walls, all
walls sharing the wall hue) and one convex object standing on the floor at the room centre,
seen by a pinhole camera that orbits the object at a fixed height, so the orientation moves the
wall corners, the floor/wall edge and the object's shading for every shape. A directional light
gives Lambert shading ``ambient + (1 - ambient) * max(0, n . l)`` and a cast shadow of the object
on the floor and walls. The pixels are not those of 3D Shapes (a MuJoCo rendering); use
``shapes3d`` for the real file.

Rendering is split in two because colour and geometry are independent:

* the *layers* of a geometry (scale, shape, orientation) are three float32 maps, one per region
  (floor, wall, object), holding ``coverage * shade`` averaged over ``antialias**2`` sub-pixel
  rays; there are only ``scales * shapes * orientations`` of them (480 for the full grid), ray
  cast once and kept;
* an image is ``255 * sum_r layer_r * rgb(hue_r)`` (hue -> RGB at full saturation and value),
  so a hue changes exactly the pixels its region covers.

``color_sprites`` (end of this module) is a second colour grid with several objects: a square and
a disc, each with its own hue and position factors, on a coloured background, composed the same
way from per-position coverage maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from disentkit.data._grid import RenderedGrid
from disentkit.ranges import Levels, NonNegInt, Range
from disentkit.registry import DATASETS

SHAPES = ("cube", "cylinder", "sphere", "capsule")
FULL_SIZES = {"hues": 10, "scales": 8, "shapes": 4, "orientations": 15}
SCALE_RANGE = (0.75, 1.25)
ORIENTATION_RANGE_DEG = (-30.0, 30.0)

# ---- scene constants (world units; y is up, the floor is y = 0) -------------------------------
ROOM_HALF_WIDTH = 3.5  # walls at x = +-R and z = +-R
CAMERA_DISTANCE = 3.0  # orbit radius around the vertical axis through the object
CAMERA_HEIGHT = 1.5
TARGET_HEIGHT = 0.5
TAN_HALF_FOV = 0.45  # about 24 degrees half field of view
CUBE_YAW_DEG = 25.0  # the cube's own yaw, so that two faces show at orientation 0
AMBIENT = 0.3
_LIGHT = np.array([-0.45, 1.0, 0.65])
LIGHT_DIRECTION = _LIGHT / np.linalg.norm(_LIGHT)  # unit vector towards the light
_EPS = 1e-6

FLOOR, WALL, OBJECT = 0, 1, 2
REGIONS = ("floor", "wall", "object")


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of hues in [0, 1) at full saturation and value (the HSV hexcone)."""
    hue = np.asarray(hue, dtype=np.float64)
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * hue[..., None]) % 6.0
    return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _hit_sphere(o, d, cy, r):
    """Nearest t > eps of rays o + t d (unit d) with the sphere centred (0, cy, 0); inf if none."""
    ox, oy, oz = o[0], o[1] - cy, o[2]
    b = ox * d[0] + oy * d[1] + oz * d[2]
    c = ox * ox + oy * oy + oz * oz - r * r
    disc = b * b - c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = -b - root
    t = np.where(t > _EPS, t, -b + root)  # origin inside (not in this scene) -> far root
    t = np.where((disc >= 0) & (t > _EPS), t, np.inf)
    p = (ox + t * d[0], oy + t * d[1], oz + t * d[2])
    return t, tuple(np.nan_to_num(c_ / r, nan=0.0, posinf=0.0, neginf=0.0) for c_ in p)


def _hit_vertical_tube(o, d, r, y0, y1):
    """Nearest hit with the side of the vertical cylinder x^2 + z^2 = r^2, y0 <= y <= y1."""
    a = d[0] * d[0] + d[2] * d[2]
    b = o[0] * d[0] + o[2] * d[2]
    c = o[0] * o[0] + o[2] * o[2] - r * r
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    y = o[1] + t * d[1]
    ok = (disc >= 0) & (a > 1e-12) & (t > _EPS) & (y >= y0) & (y <= y1)
    t = np.where(ok, t, np.inf)
    x, z = o[0] + t * d[0], o[2] + t * d[2]
    normal = (np.where(ok, x / r, 0.0), np.zeros_like(t), np.where(ok, z / r, 0.0))
    return t, normal


def _hit_top_disc(o, d, r, y):
    """Hit with the upward-facing disc x^2 + z^2 <= r^2 at height y (seen from above)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (y - o[1]) / d[1]
    x, z = o[0] + t * d[0], o[2] + t * d[2]
    ok = (d[1] < 0) & (t > _EPS) & (x * x + z * z <= r * r)
    t = np.where(ok, t, np.inf)
    zero = np.zeros_like(t)
    return t, (zero, np.ones_like(t), zero)


def _hit_box(o, d, half, yaw):
    """Hit with a cube of half side ``half`` on the floor, rotated by ``yaw`` about the y axis."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    # world -> object frame (inverse yaw rotation); the cube spans [-h, h] x [0, 2h] x [-h, h]
    lo = (cos * o[0] - sin * o[2], o[1] - half, sin * o[0] + cos * o[2])
    ld = (cos * d[0] - sin * d[2], d[1], sin * d[0] + cos * d[2])
    t_near = np.full(np.broadcast(o[0], d[0]).shape, -np.inf)
    t_far = np.full_like(t_near, np.inf)
    axis = np.zeros(t_near.shape, dtype=np.int64)
    sign = np.zeros_like(t_near)
    for k in range(3):
        dk = np.where(np.abs(ld[k]) < 1e-12, 1e-12, ld[k])
        t1 = (-half - lo[k]) / dk
        t2 = (half - lo[k]) / dk
        entry, leave = np.minimum(t1, t2), np.maximum(t1, t2)
        better = entry > t_near
        axis = np.where(better, k, axis)
        sign = np.where(better, -np.sign(dk), sign)
        t_near = np.maximum(t_near, entry)
        t_far = np.minimum(t_far, leave)
    ok = (t_near <= t_far) & (t_near > _EPS)
    t = np.where(ok, t_near, np.inf)
    n_local = [np.where(ok & (axis == k), sign, 0.0) for k in range(3)]
    # object -> world: the forward yaw rotation
    normal = (
        cos * n_local[0] + sin * n_local[2],
        n_local[1],
        -sin * n_local[0] + cos * n_local[2],
    )
    return t, normal


def _nearest(*hits):
    """Element-wise nearest of several (t, normal) hits."""
    t, normal = hits[0]
    normal = list(normal)
    for t_k, n_k in hits[1:]:
        closer = t_k < t
        t = np.where(closer, t_k, t)
        normal = [np.where(closer, a, b) for a, b in zip(n_k, normal, strict=True)]
    return t, tuple(normal)


def _hit_object(o, d, shape: int, scale):
    """Nearest hit of rays with object ``shape`` (index into :data:`SHAPES`) of size ``scale``."""
    if shape == 0:  # cube, side 0.9 * scale
        return _hit_box(o, d, 0.45 * scale, math.radians(CUBE_YAW_DEG))
    if shape == 1:  # cylinder, radius 0.42 * scale, height 0.9 * scale
        r, h = 0.42 * scale, 0.9 * scale
        return _nearest(_hit_vertical_tube(o, d, r, 0.0, h), _hit_top_disc(o, d, r, h))
    if shape == 2:  # sphere, radius 0.5 * scale, resting on the floor
        return _hit_sphere(o, d, 0.5 * scale, 0.5 * scale)
    if shape == 3:  # capsule, radius 0.32 * scale, straight part 0.6 * scale, height 1.24 * scale
        r, length = 0.32 * scale, 0.6 * scale
        return _nearest(
            _hit_vertical_tube(o, d, r, r, r + length),
            _hit_sphere(o, d, r, r),
            _hit_sphere(o, d, r + length, r),
        )
    raise ValueError(f"shape index must be in 0..{len(SHAPES) - 1}, got {shape}")


def _hit_room(o, d):
    """Nearest hit of rays starting inside the room with the floor (region 0) or a wall (1)."""
    R = ROOM_HALF_WIDTH
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[1] < 0, -o[1] / d[1], np.inf)
        t_x = np.where(d[0] > 0, (R - o[0]) / d[0], np.where(d[0] < 0, (-R - o[0]) / d[0], np.inf))
        t_z = np.where(d[2] > 0, (R - o[2]) / d[2], np.where(d[2] < 0, (-R - o[2]) / d[2], np.inf))
    x_wall = t_x < t_z
    t_wall = np.where(x_wall, t_x, t_z)
    floor = t_floor <= t_wall
    t = np.where(floor, t_floor, t_wall)
    # inward normals: floor +y; wall x = +-R -> -+x; wall z = +-R -> -+z
    nx = np.where(~floor & x_wall, -np.sign(d[0]), 0.0)
    nz = np.where(~floor & ~x_wall, -np.sign(d[2]), 0.0)
    ny = np.where(floor, 1.0, 0.0)
    return t, np.where(floor, FLOOR, WALL), (nx, ny, nz)


def _camera_rays(azimuth_rad: np.ndarray, image_size: int, dx: float, dy: float):
    """Origins (n, 1) and unit directions (n, P) of one sub-pixel ray per pixel.

    The camera orbits at ``CAMERA_DISTANCE`` and height ``CAMERA_HEIGHT`` at azimuth ``a`` about
    the y axis (position (D sin a, H, D cos a)) and looks at (0, TARGET_HEIGHT, 0). Pixel (row i,
    column j) samples screen point u = 2 (j + dx) / S - 1 (right), v = 1 - 2 (i + dy) / S (up).
    """
    a = np.asarray(azimuth_rad, dtype=np.float64)[:, None]
    pos = (CAMERA_DISTANCE * np.sin(a), np.full_like(a, CAMERA_HEIGHT), CAMERA_DISTANCE * np.cos(a))
    fwd = np.stack([-pos[0], TARGET_HEIGHT - pos[1], -pos[2]])
    fwd = fwd / np.linalg.norm(fwd, axis=0)
    right = np.stack([-fwd[2], np.zeros_like(a), fwd[0]])  # forward x world up
    right = right / np.linalg.norm(right, axis=0)
    up = np.stack(  # right x forward
        [
            right[1] * fwd[2] - right[2] * fwd[1],
            right[2] * fwd[0] - right[0] * fwd[2],
            right[0] * fwd[1] - right[1] * fwd[0],
        ]
    )
    coords = np.arange(image_size, dtype=np.float64)
    u = (2.0 * (coords + dx) / image_size - 1.0) * TAN_HALF_FOV
    v = (1.0 - 2.0 * (coords + dy) / image_size) * TAN_HALF_FOV
    uu = np.tile(u, image_size)[None, :]  # column fastest
    vv = np.repeat(v, image_size)[None, :]
    d = [fwd[k] + uu * right[k] + vv * up[k] for k in range(3)]
    norm = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    return pos, tuple(c / norm for c in d)


def render_layers(
    shape: np.ndarray,
    scale: np.ndarray,
    orientation_deg: np.ndarray,
    image_size: int = 64,
    antialias: int = 3,
) -> np.ndarray:
    """Ray cast the region layers of scenes given by factor *values*.

    ``shape`` holds indices into :data:`SHAPES`, ``scale`` the object scale, ``orientation_deg``
    the camera azimuth in degrees. Returns float32 (n, S, S, 3): for the floor, wall and object
    regions, the mean over ``antialias**2`` sub-pixel rays of ``[ray hits region] * shade`` with
    ``shade = AMBIENT + (1 - AMBIENT) * max(0, n . l)`` and ``n . l`` set to 0 in the object's
    cast shadow. The three layers of a pixel sum to at most 1.
    """
    shape = np.asarray(shape, dtype=np.int64).reshape(-1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    azimuth = np.radians(np.asarray(orientation_deg, dtype=np.float64).reshape(-1))
    n = len(shape)
    if len(scale) != n or len(azimuth) != n:
        raise ValueError(f"render_layers: shape, scale and orientation need the same length {n}")
    if n and (shape.min() < 0 or shape.max() >= len(SHAPES)):
        raise ValueError(f"render_layers: shape indices must be in 0..{len(SHAPES) - 1}")
    if antialias < 1:
        raise ValueError(f"render_layers: antialias must be >= 1, got {antialias}")
    pixels = image_size * image_size
    layers = np.zeros((n, pixels, 3), dtype=np.float64)
    light = LIGHT_DIRECTION
    for kind in np.unique(shape):
        rows = np.flatnonzero(shape == kind)
        s = scale[rows][:, None]
        for sy in range(antialias):
            for sx in range(antialias):
                o, d = _camera_rays(azimuth[rows], image_size, (sx + 0.5) / antialias,
                                    (sy + 0.5) / antialias)
                t_room, region, n_room = _hit_room(o, d)
                t_obj, n_obj = _hit_object(o, d, int(kind), s)
                on_object = t_obj < t_room
                # cast shadow: a room point whose ray towards the light meets the object
                hit = tuple(o[k] + t_room * d[k] for k in range(3))
                towards = tuple(np.full_like(hit[0], light[k]) for k in range(3))
                shadowed = np.isfinite(_hit_object(hit, towards, int(kind), s)[0])
                cos_room = n_room[0] * light[0] + n_room[1] * light[1] + n_room[2] * light[2]
                cos_room = np.where(shadowed, 0.0, cos_room)
                cos_obj = n_obj[0] * light[0] + n_obj[1] * light[1] + n_obj[2] * light[2]
                lambert = np.maximum(np.where(on_object, cos_obj, cos_room), 0.0)
                shade = AMBIENT + (1.0 - AMBIENT) * lambert
                region = np.where(on_object, OBJECT, region)
                for k in range(3):
                    layers[rows, :, k] += np.where(region == k, shade, 0.0)
    layers /= antialias * antialias
    return layers.reshape(n, image_size, image_size, 3).astype(np.float32)


def compose(layers: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """uint8 images ``round(255 * sum_r layers[..., r] * colours[:, r])``.

    ``layers`` float32 (n, H, W, 3 regions), ``colours`` (n, 3 regions, 3 RGB) in [0, 1]. One
    (H*W, 3) @ (3, 3) product per image, so an image never depends on the rest of its batch.
    """
    n, h, w, _ = layers.shape
    c = np.asarray(colours, dtype=np.float32) * np.float32(255.0)
    out = np.matmul(np.ascontiguousarray(layers, dtype=np.float32).reshape(n, h * w, 3), c)
    out += np.float32(0.5)
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8).reshape(n, h, w, 3)


def _evenly(count: int, low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, count)


class _ComposedGrid(RenderedGrid):
    """A procedural colour grid composed from cached layers (``render_indices``), with the lazy
    uint8 cache of :class:`RenderedGrid`."""

    _compose_chunk = 128  # images composed per step: float32 temporaries of ~6 MiB


@DATASETS.register("shapes3d_like")
class Shapes3DLike(_ComposedGrid):
    """Procedural 3D-Shapes-style scenes: floor_hue, wall_hue, object_hue, scale, shape, orientation.

    The defaults give the 3D Shapes grid (10, 10, 10, 8, 4, 15) = 480,000 images. Smaller counts
    choose an evenly spaced grid over the same value ranges (hues ``k / n``, scales over
    [0.75, 1.25], orientations over [-30, 30] degrees; ``shapes`` keeps the first n of cube,
    cylinder, sphere, capsule). The region layers of each (scale, shape, orientation) are ray cast
    once on first use and kept (float32, 3 * S * S per geometry); images are composed from them
    per batch, and a grid of at most ``cache_mib`` MiB is also kept as uint8 once composed.
    """

    @dataclass
    class Config:
        #: number of floor hues (k / n for k < n; 10 as in 3D Shapes)
        floor_hues: Levels = 10
        #: number of wall hues
        wall_hues: Levels = 10
        #: number of object hues
        object_hues: Levels = 10
        #: number of object scales, evenly spaced over [0.75, 1.25]
        scales: Levels = 8
        #: number of shapes: the first n of cube, cylinder, sphere, capsule (2..4)
        shapes: Annotated[int, Range(ge=2, le=4, what="the first n of cube, cylinder, sphere, capsule")] = 4
        #: number of camera azimuths, evenly spaced over [-30, 30] degrees
        orientations: Levels = 15
        #: image side in pixels (rays are cast at this resolution)
        image_size: Literal[64, 32] = 64
        #: sub-pixel rays per pixel along each axis (antialias**2 rays per pixel), 1..8
        antialias: Annotated[int, Range(ge=1, le=8, what="rays per pixel axis")] = 3
        #: keep the composed uint8 grid in memory when it is at most this many MiB
        cache_mib: NonNegInt = 256

    name = "shapes3d_like"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        del data_root  # procedural: no files
        self.config = config = config if config is not None else self.Config()
        self._validate(config)
        self.floor_hue_values = np.arange(config.floor_hues) / config.floor_hues
        self.wall_hue_values = np.arange(config.wall_hues) / config.wall_hues
        self.object_hue_values = np.arange(config.object_hues) / config.object_hues
        self.scale_values = _evenly(config.scales, *SCALE_RANGE)
        self.shape_names = SHAPES[: config.shapes]
        self.orientation_values = _evenly(config.orientations, *ORIENTATION_RANGE_DEG)
        self.factor_sizes = (
            config.floor_hues,
            config.wall_hues,
            config.object_hues,
            config.scales,
            config.shapes,
            config.orientations,
        )
        size = config.image_size
        self._num_geometries = config.scales * config.shapes * config.orientations
        self._layers = np.zeros((self._num_geometries, size, size, 3), dtype=np.float32)
        self._layers_done = np.zeros(self._num_geometries, dtype=bool)
        self._setup_cache((size, size, 3), config.cache_mib)

    @staticmethod
    def _validate(config: Config) -> None:
        counts = {
            "floor_hues": (config.floor_hues, None),
            "wall_hues": (config.wall_hues, None),
            "object_hues": (config.object_hues, None),
            "scales": (config.scales, None),
            "shapes": (config.shapes, len(SHAPES)),
            "orientations": (config.orientations, None),
        }
        for field, (value, most) in counts.items():
            if not isinstance(value, int | np.integer) or value < 2 or (most and value > most):
                bound = f"2..{most}" if most else "an integer >= 2"
                raise ValueError(
                    f"shapes3d_like: data.{field} must be {bound} (a factor needs at least two "
                    f"values to vary), got {value!r}"
                )
        if config.image_size not in (32, 64):
            raise ValueError(f"shapes3d_like: data.image_size must be 64 or 32, got {config.image_size!r}")
        if not 1 <= config.antialias <= 8:
            raise ValueError(
                f"shapes3d_like: data.antialias must be in 1..8 rays per pixel axis, got "
                f"{config.antialias!r}"
            )
        if config.cache_mib < 0:
            raise ValueError(f"shapes3d_like: data.cache_mib must be >= 0, got {config.cache_mib!r}")

    def factor_values(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Physical values (hues in [0, 1), scale, shape index, azimuth in degrees) of classes."""
        factors = np.asarray(factors, dtype=np.int64)
        return {
            "floor_hue": self.floor_hue_values[factors[:, 0]],
            "wall_hue": self.wall_hue_values[factors[:, 1]],
            "object_hue": self.object_hue_values[factors[:, 2]],
            "scale": self.scale_values[factors[:, 3]],
            "shape": factors[:, 4],
            "orientation": self.orientation_values[factors[:, 5]],
        }

    def layers(self, geometry: np.ndarray) -> np.ndarray:
        """Region layers (n, S, S, 3) of geometry indices ``(scale * shapes + shape) *
        orientations + orientation`` (the flat index modulo the geometry count), ray cast on
        first use."""
        geometry = np.asarray(geometry, dtype=np.int64)
        todo = np.unique(geometry)
        todo = todo[~self._layers_done[todo]]
        if len(todo):
            scale, shape, orientation = np.unravel_index(todo, self.factor_sizes[3:])
            self._layers[todo] = render_layers(
                shape,
                self.scale_values[scale],
                self.orientation_values[orientation],
                image_size=self.config.image_size,
                antialias=self.config.antialias,
            )
            self._layers_done[todo] = True
        return self._layers[geometry]

    def render_indices(self, indices: np.ndarray) -> np.ndarray:
        """Compose (without the uint8 cache) images (n, S, S, 3) for flat indices."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        size = self.config.image_size
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        for start in range(0, len(indices), self._compose_chunk):  # bounded float temporaries
            stop = start + self._compose_chunk
            out[start:stop] = self._compose(indices[start:stop])
        return out

    def _compose(self, indices: np.ndarray) -> np.ndarray:
        factors = self.index_to_factors(indices)
        geometry = np.ravel_multi_index(tuple(factors[:, 3:].T), self.factor_sizes[3:])
        hues = np.stack(
            [
                self.floor_hue_values[factors[:, 0]],
                self.wall_hue_values[factors[:, 1]],
                self.object_hue_values[factors[:, 2]],
            ],
            axis=1,
        )
        return compose(self.layers(geometry), hue_to_rgb(hues))


# ---- color_sprites: two coloured sprites on a coloured background ------------------------------
SPRITE_HALF_SIZE = 6.0 / 64  # square half side and disc radius, as fractions of the image side
POSITION_RANGE = (0.2, 0.8)  # sprite centres, as fractions of the image side
BACKGROUND_SATURATION, BACKGROUND_VALUE = 0.6, 0.45
DISC_VALUE = 0.8  # the square is drawn at value 1


def sprite_coverage(
    kind: Literal["square", "disc"], x: np.ndarray, y: np.ndarray, image_size: int, antialias: int = 4
) -> np.ndarray:
    """Fraction of each pixel covered by axis-aligned squares or discs centred at (x, y).

    ``x`` (right) and ``y`` (down) are centres as fractions of the image side; the square's half
    side and the disc's radius are ``SPRITE_HALF_SIZE``. Coverage is the mean over
    ``antialias**2`` sub-pixel samples. Returns float32 (n, S, S).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1, 1)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1, 1)
    half = SPRITE_HALF_SIZE
    offsets = (np.arange(antialias) + 0.5) / antialias
    samples = ((np.arange(image_size)[:, None] + offsets[None, :]) / image_size).reshape(-1)
    dx = samples[None, None, :] - x  # (n, 1, S*a) columns
    dy = samples[None, :, None] - y  # (n, S*a, 1) rows
    if kind == "square":
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif kind == "disc":
        inside = dx * dx + dy * dy <= half * half
    else:
        raise ValueError(f"sprite_coverage: kind must be 'square' or 'disc', got {kind!r}")
    n = len(x)
    grid = inside.reshape(n, image_size, antialias, image_size, antialias)
    return grid.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


def hsv_to_rgb(hue: np.ndarray, saturation: float, value: float) -> np.ndarray:
    """RGB in [0, 1] of hues at the given saturation and value (HSV hexcone)."""
    return value * (1.0 - saturation * (1.0 - hue_to_rgb(hue)))


@DATASETS.register("color_sprites")
class ColorSprites(_ComposedGrid):
    """Two coloured sprites (a square, and a disc drawn over it) on a coloured background.

    Factors: ``background_hue``, ``square_hue``, ``square_x``, ``square_y``, ``disc_hue``,
    ``disc_x``, ``disc_y``, row-major with ``disc_y`` fastest. Hues are ``k / n``; the background
    is drawn at saturation 0.6 and value 0.45, the square at full saturation and value, the disc at
    full saturation and value 0.8, so every pair of regions differs in brightness even when the
    hues coincide. Centres are evenly spaced over [0.2, 0.8] of the image side (``x`` right,
    ``y`` down). The disc's radius equals the square's half side, so a disc on top of the square
    never hides its corners: every factor is visible in every image. Pixels are
    ``round(255 * (bg (1 - a)(1 - b) + square a (1 - b) + disc b))`` with antialiased coverages
    ``a`` and ``b``; coverage maps are computed once per position and images composed per batch.
    """

    @dataclass
    class Config:
        #: number of background hues (k / n)
        background_hues: Levels = 4
        #: number of hues of each sprite
        sprite_hues: Levels = 4
        #: number of centre positions per axis of each sprite, evenly spaced over [0.2, 0.8]
        positions: Levels = 6
        #: image side in pixels
        image_size: Literal[64, 32] = 64
        #: keep the composed uint8 grid in memory when it is at most this many MiB
        cache_mib: NonNegInt = 256

    name = "color_sprites"
    factor_names = (
        "background_hue", "square_hue", "square_x", "square_y", "disc_hue", "disc_x", "disc_y"
    )

    def __init__(self, config: Config | None = None, *, data_root: Path | None = None) -> None:
        del data_root  # procedural: no files
        self.config = config = config if config is not None else self.Config()
        for field in ("background_hues", "sprite_hues", "positions"):
            value = getattr(config, field)
            if not isinstance(value, int | np.integer) or value < 2:
                raise ValueError(
                    f"color_sprites: data.{field} must be an integer >= 2 (a factor needs at "
                    f"least two values to vary), got {value!r}"
                )
        if config.image_size not in (32, 64):
            raise ValueError(f"color_sprites: data.image_size must be 64 or 32, got {config.image_size!r}")
        if config.cache_mib < 0:
            raise ValueError(f"color_sprites: data.cache_mib must be >= 0, got {config.cache_mib!r}")
        h, p, size = config.sprite_hues, config.positions, config.image_size
        self.background_hue_values = np.arange(config.background_hues) / config.background_hues
        self.sprite_hue_values = np.arange(h) / h
        self.position_values = np.linspace(*POSITION_RANGE, p)
        self.factor_sizes = (config.background_hues, h, p, p, h, p, p)
        xs, ys = np.meshgrid(self.position_values, self.position_values, indexing="ij")
        self._square = sprite_coverage("square", xs.ravel(), ys.ravel(), size)  # index x * p + y
        self._disc = sprite_coverage("disc", xs.ravel(), ys.ravel(), size)
        self._background_rgb = hsv_to_rgb(
            self.background_hue_values, BACKGROUND_SATURATION, BACKGROUND_VALUE
        ).astype(np.float32)
        self._square_rgb = hsv_to_rgb(self.sprite_hue_values, 1.0, 1.0).astype(np.float32)
        self._disc_rgb = hsv_to_rgb(self.sprite_hue_values, 1.0, DISC_VALUE).astype(np.float32)
        self._setup_cache((size, size, 3), config.cache_mib)

    def factor_values(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Physical values (hues in [0, 1), centres as fractions of the image side)."""
        f = np.asarray(factors, dtype=np.int64)
        hue, pos = self.sprite_hue_values, self.position_values
        return {
            "background_hue": self.background_hue_values[f[:, 0]],
            "square_hue": hue[f[:, 1]], "square_x": pos[f[:, 2]], "square_y": pos[f[:, 3]],
            "disc_hue": hue[f[:, 4]], "disc_x": pos[f[:, 5]], "disc_y": pos[f[:, 6]],
        }

    def render_indices(self, indices: np.ndarray) -> np.ndarray:
        """Compose (without the uint8 cache) images (n, S, S, 3) for flat indices."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        size = self.config.image_size
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        p = self.config.positions
        for start in range(0, len(indices), self._compose_chunk):
            f = self.index_to_factors(indices[start : start + self._compose_chunk])
            a = self._square[f[:, 2] * p + f[:, 3]]
            b = self._disc[f[:, 5] * p + f[:, 6]]
            layers = np.stack([(1 - a) * (1 - b), a * (1 - b), b], axis=-1)
            colours = np.stack(
                [self._background_rgb[f[:, 0]], self._square_rgb[f[:, 1]], self._disc_rgb[f[:, 4]]],
                axis=1,
            )
            out[start : start + len(f)] = compose(layers, colours)
        return out
