"""The procedural colour scenes. ``shapes3d_like``: 3D Shapes grid layout, hand-computed shading and
colours, every factor visible, region-exact colour factors, sub-grids, caching, config errors,
training. ``color_sprites``: layout, hand-computed pixels and coverage, visible factors, regions."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest

from disentkit.data.scenes import (
    AMBIENT,
    LIGHT_DIRECTION,
    SHAPES,
    ColorSprites,
    Shapes3DLike,
    hue_to_rgb,
    render_layers,
    sprite_coverage,
)
from disentkit.registry import DATASETS

FLOOR, WALL, OBJECT = 0, 1, 2


def _data(**kw) -> Shapes3DLike:
    return Shapes3DLike(Shapes3DLike.Config(**kw))


def _images(data: Shapes3DLike, factors) -> np.ndarray:
    return data.uint8_from_indices(data.factors_to_index(np.asarray(factors)))


def test_registered_with_3dshapes_factor_layout_and_index_round_trip() -> None:
    data = DATASETS.get("shapes3d_like")()
    assert data.factor_names == (
        "floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"
    )
    assert data.factor_sizes == (10, 10, 10, 8, 4, 15)
    assert len(data) == 480000 and data.value_max == 255
    assert data.observation_shape == (64, 64, 3)
    # orientation fastest: index = classes @ [48000, 4800, 480, 60, 15, 1] (deepmind/3d-shapes ``get_index``)
    factors = data.sample_factors(500, np.random.RandomState(0))
    index = data.factors_to_index(factors)
    np.testing.assert_array_equal(index, factors @ np.array([48000, 4800, 480, 60, 15, 1]))
    np.testing.assert_array_equal(data.index_to_factors(index), factors)
    values = data.factor_values(np.array([[0, 9, 5, 7, 3, 14]]))
    assert values["wall_hue"][0] == pytest.approx(0.9) and values["object_hue"][0] == 0.5
    assert values["scale"][0] == 1.25 and values["orientation"][0] == 30.0
    assert data.factor_values(np.array([[0, 0, 0, 0, 0, 7]]))["orientation"][0] == pytest.approx(0)


def test_hue_to_rgb_matches_colorsys() -> None:
    hues = np.linspace(0, 1, 37, endpoint=False)
    expected = np.array([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in hues])
    np.testing.assert_allclose(hue_to_rgb(hues), expected, atol=1e-12)


def test_hand_computed_floor_and_back_wall_pixels() -> None:
    # Orientation 0 (camera on +z looking at the room centre), hues 0, 1/3, 2/3 = red, green, blue.
    # Bottom-left pixel: lit floor, n = +y -> shade AMBIENT + (1 - AMBIENT) * l_y.
    # Top-centre pixels: back wall z = -R, n = +z -> shade AMBIENT + (1 - AMBIENT) * l_z.
    data = _data(floor_hues=3, wall_hues=3, object_hues=3, scales=2, shapes=2, orientations=3)
    image = _images(data, [[0, 1, 2, 0, 0, 1]])[0].astype(int)
    floor = 255 * (AMBIENT + (1 - AMBIENT) * LIGHT_DIRECTION[1])
    wall = 255 * (AMBIENT + (1 - AMBIENT) * LIGHT_DIRECTION[2])
    assert floor == pytest.approx(216.53, abs=0.01) and wall == pytest.approx(167.52, abs=0.01)
    np.testing.assert_array_equal(image[63, 0], [round(floor), 0, 0])
    np.testing.assert_array_equal(image[0, 28:36], [[0, round(wall), 0]] * 8)
    # The cube (blue) is in the middle of the image; no red or green channel on its centre.
    centre = image[32, 32]
    assert centre[0] == 0 and centre[1] == 0 and centre[2] > 70


def test_values_dtype_range_and_layers_sum_to_shade() -> None:
    data = _data(floor_hues=2, wall_hues=2, object_hues=2, scales=2, orientations=3)
    rs = np.random.RandomState(1)
    obs = data.sample_observations_from_factors(data.sample_factors(32, rs), rs)
    assert obs.dtype == np.float32 and obs.shape == (32, 64, 64, 3)
    assert 0.0 <= obs.min() and obs.max() <= 1.0 and obs.max() > 0.8
    layers = render_layers(np.arange(4), np.ones(4), np.zeros(4))
    assert layers.dtype == np.float32 and layers.shape == (4, 64, 64, 3)
    total = layers.sum(-1)
    # every sub-pixel ray hits exactly one region, with shade in [AMBIENT, 1]
    assert total.min() >= AMBIENT - 1e-6 and total.max() <= 1 + 1e-6
    covered = (layers > 0).sum(-1)
    assert covered.min() == 1 and (covered == 1).mean() > 0.9  # only edge pixels mix regions


def test_deterministic_across_instances_batches_and_cache() -> None:
    kw = dict(floor_hues=2, wall_hues=2, object_hues=3, scales=2, orientations=3)
    cached, uncached = _data(**kw), _data(**kw, cache_mib=0)
    assert cached._cache is not None and uncached._cache is None
    indices = np.random.RandomState(0).randint(0, len(cached), size=100)
    one = uncached.uint8_from_indices(indices)
    np.testing.assert_array_equal(one, cached.uint8_from_indices(indices))
    np.testing.assert_array_equal(one[::-1], uncached.uint8_from_indices(indices[::-1]))
    np.testing.assert_array_equal(one[5:6], _data(**kw, cache_mib=0).uint8_from_indices(indices[5:6]))
    # the metric suite may encode such a grid once (no randomness drawn per observation)
    assert cached.deterministic_observations and _sprites().deterministic_observations
    rs = np.random.RandomState(3)
    state = rs.get_state()[1].copy()
    cached.sample_observations_from_factors(cached.index_to_factors(indices[:4]), rs)
    np.testing.assert_array_equal(rs.get_state()[1], state)


def test_distinct_shapes_look_distinct() -> None:
    for orientation in (0.0, 30.0):
        objects = render_layers(np.arange(4), np.ones(4), np.full(4, orientation))[..., OBJECT] > 0
        areas = objects.sum(axis=(1, 2))
        assert (areas > 200).all()
        for i in range(4):
            for j in range(i + 1, 4):
                iou = (objects[i] & objects[j]).sum() / (objects[i] | objects[j]).sum()
                assert iou < 0.85, (SHAPES[i], SHAPES[j], orientation, iou)


def test_every_factor_changes_the_image_for_every_shape() -> None:
    data = _data(floor_hues=2, wall_hues=2, object_hues=2, scales=2, orientations=15)
    for shape in range(4):
        base = np.array([0, 0, 0, 0, shape, 7])
        for factor in (0, 1, 2, 3, 5):
            images = []
            for step in ((1,) if factor != 5 else (1, -1, 7, -7)):
                changed = base.copy()
                changed[factor] += step
                images.append(changed)
            pixels = _images(data, [base, *images]).astype(int)
            for other in pixels[1:]:
                assert np.abs(other - pixels[0]).sum(-1).astype(bool).mean() > 0.01, (shape, factor)
        shapes = _images(data, [[0, 0, 0, 0, s, 7] for s in range(4)])
        for s in range(4):
            if s != shape:
                assert (shapes[s] != shapes[shape]).any(-1).mean() > 0.01


def test_orientation_moves_the_room_for_every_shape() -> None:
    # The room itself changes with the camera azimuth, also for rotation-symmetric shapes: the
    # floor/wall edge tilts and a side wall (shaded differently) comes into view at +-30 degrees.
    for shape in range(4):
        walls = render_layers([shape] * 3, [1.0] * 3, [-30.0, 0.0, 30.0])[..., WALL]
        for turned in (walls[0], walls[2]):
            assert ((turned > 0) != (walls[1] > 0)).mean() > 0.005
            assert (np.abs(turned - walls[1]) > 0.05).mean() > 0.1


def test_azimuth_sign_mirrors_the_coverage_of_symmetric_scenes() -> None:
    # The room and the sphere, cylinder and capsule are symmetric under x -> -x, so their region
    # coverage at azimuth +a is the mirror image of that at -a (the light is not symmetric, so
    # only coverage is compared); at azimuth 0 the sphere is centred.
    for shape in (1, 2, 3):
        layers = render_layers([shape] * 2, [1.0] * 2, [20.0, -20.0]) > 0
        mismatch = (layers[0] != layers[1][:, ::-1]).mean()
        assert mismatch < 1e-3, (SHAPES[shape], mismatch)
    sphere = render_layers([2], [1.0], [0.0])[0, ..., OBJECT] > 0
    assert (sphere != sphere[:, ::-1]).mean() < 1e-3
    cols = np.flatnonzero(sphere.any(0))
    assert abs((cols[0] + cols[-1]) / 2 - 31.5) <= 0.5


def test_scale_grows_the_object_for_every_shape() -> None:
    scales = np.linspace(0.75, 1.25, 4)
    for shape in range(4):
        areas = (render_layers([shape] * 4, scales, [0.0] * 4)[..., OBJECT] > 0).sum(axis=(1, 2))
        assert (np.diff(areas) > 0).all(), (SHAPES[shape], areas)


@pytest.mark.parametrize("factor,region", [(0, FLOOR), (1, WALL), (2, OBJECT)])
def test_colour_factor_changes_only_its_region(factor: int, region: int) -> None:
    data = _data(floor_hues=3, wall_hues=3, object_hues=3, scales=2, orientations=3)
    for shape in range(4):
        base = np.array([0, 1, 2, 1, shape, 0])
        other = base.copy()
        other[factor] = (other[factor] + 1) % 3
        a, b = _images(data, [base, other]).astype(int)
        changed = (a != b).any(-1)
        layers = data.layers(np.array([data.factors_to_index(base[None])[0] % 60]))[0]
        in_region = layers[..., region] > 0
        pure = in_region & (layers.sum(-1) == layers[..., region])
        assert changed.any()
        assert not (changed & ~in_region).any()  # nothing outside the region changes
        assert changed[pure].all()  # every pixel of only this region changes


def test_subgrid_values_and_images_agree_with_the_full_grid() -> None:
    sub = _data(floor_hues=5, wall_hues=2, object_hues=5, scales=2, shapes=3, orientations=3)
    assert sub.factor_sizes == (5, 2, 5, 2, 3, 3) and len(sub) == 900
    np.testing.assert_allclose(sub.floor_hue_values, [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(sub.scale_values, [0.75, 1.25])
    np.testing.assert_allclose(sub.orientation_values, [-30, 0, 30], atol=1e-12)
    assert sub.shape_names == ("cube", "cylinder", "sphere")
    full = _data(cache_mib=0)
    sub_factors = np.array([[1, 1, 4, 1, 2, 2], [4, 0, 0, 0, 0, 0], [2, 1, 3, 1, 1, 1]])
    full_factors = np.array([[2, 5, 8, 7, 2, 14], [8, 0, 0, 0, 0, 0], [4, 5, 6, 7, 1, 7]])
    a, b = _images(sub, sub_factors).astype(int), _images(full, full_factors).astype(int)
    assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.999
    small = _data(floor_hues=2, wall_hues=2, object_hues=2, scales=2, orientations=2, image_size=32)
    assert small.observation_shape == (32, 32, 3) and small.value_max == 255
    assert small.uint8_from_indices(np.arange(5)).shape == (5, 32, 32, 3)


def test_cache_is_lazy_and_whole_grid_available() -> None:
    data = _data(floor_hues=2, wall_hues=2, object_hues=2, scales=2, shapes=2, orientations=2)
    assert not data._layers_done.any() and not data._rendered.any()
    data.uint8_from_indices(np.array([0]))
    assert data._layers_done.sum() == 8  # the first cache chunk covers the whole 64-image grid
    grid = data.images_uint8
    assert grid.shape == (64, 64, 64, 3) and grid.dtype == np.uint8 and data._rendered.all()
    batch = data.uint8_batch(np.array([3, 0, 3]))
    assert str(batch.dtype) == "torch.uint8" and tuple(batch.shape) == (3, 64, 64, 3)
    np.testing.assert_array_equal(batch.numpy(), grid[[3, 0, 3]])
    uncached = _data(cache_mib=0)  # the full grid (5.9 GB) is composed per batch
    assert uncached._cache is None
    uncached.uint8_from_indices(np.array([0, 1, 480, 479999]))  # geometries 0, 1, 0, 479
    np.testing.assert_array_equal(np.flatnonzero(uncached._layers_done), [0, 1, 479])
    with pytest.raises(IndexError):
        data.uint8_from_indices(np.array([len(data)]))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("floor_hues", 1, "data.floor_hues must be an integer >= 2"),
        ("orientations", 0, "data.orientations must be an integer >= 2"),
        ("shapes", 5, r"data.shapes must be 2..4"),
        ("image_size", 48, "data.image_size must be 64 or 32, got 48"),
        ("antialias", 0, r"data.antialias must be in 1..8"),
        ("cache_mib", -1, "data.cache_mib must be >= 0"),
    ],
)
def test_bad_config_values_raise_clear_errors(field: str, value: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _data(**{field: value})


def test_trains_from_the_cli_smoke_preset(tmp_path: Path) -> None:
    from disentkit.cli import main

    args = ["train", "preset=betavae/smoke", "data.name=shapes3d_like", "data.image_size=32",
            "data.floor_hues=2", "data.wall_hues=2", "data.object_hues=2", "data.scales=2",
            "data.orientations=3", "train.steps=4", "train.batch_size=8", "log.every=2",
            f"out_dir={tmp_path}", "name=r"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().split("\n")
            if line]
    assert rows[-1]["step"] == 4 and np.isfinite(rows[-1]["loss"])
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "finished"


# ---- color_sprites -----------------------------------------------------------------------------


def _sprites(**kw) -> ColorSprites:
    return ColorSprites(ColorSprites.Config(**kw))


def test_color_sprites_layout_and_hand_computed_pixels() -> None:
    data = DATASETS.get("color_sprites")()
    assert data.factor_names == (
        "background_hue", "square_hue", "square_x", "square_y", "disc_hue", "disc_x", "disc_y"
    )
    assert data.factor_sizes == (4, 4, 6, 6, 4, 6, 6) and len(data) == 82944
    assert data.observation_shape == (64, 64, 3) and data.value_max == 255
    factors = data.sample_factors(200, np.random.RandomState(0))
    np.testing.assert_array_equal(data.index_to_factors(data.factors_to_index(factors)), factors)
    np.testing.assert_allclose(data.position_values, [0.2, 0.32, 0.44, 0.56, 0.68, 0.8])
    # background hue 0 at saturation 0.6, value 0.45: (0.45, 0.18, 0.18) -> (115, 46, 46);
    # square (x 0.2, y 0.2 -> centre pixel 12.8) hue 1/4 at full value: (0.5, 1, 0) -> (128, 255, 0);
    # disc (x 0.8, y 0.8) hue 1/2 at value 0.8: (0, 0.8, 0.8) -> (0, 204, 204).
    image = _images(data, [[0, 1, 0, 0, 2, 5, 5]])[0]
    np.testing.assert_array_equal(image[32, 32], [115, 46, 46])
    np.testing.assert_array_equal(image[12, 12], [128, 255, 0])
    np.testing.assert_array_equal(image[51, 51], [0, 204, 204])


def test_sprite_coverage_hand_computed() -> None:
    # centre 0.5 of 64 px = 32, half side 6 px: columns/rows 26..37 fully covered, nothing else.
    square = sprite_coverage("square", [0.5], [0.5], 64)[0]
    expected = np.zeros((64, 64), np.float32)
    expected[26:38, 26:38] = 1
    np.testing.assert_array_equal(square, expected)
    disc = sprite_coverage("disc", [0.5], [0.25], 64)[0]
    assert disc.sum() == pytest.approx(np.pi * 36, rel=0.02)
    rows, cols = np.nonzero(disc)
    assert (rows.min() + rows.max()) / 2 == 15.5 and (cols.min() + cols.max()) / 2 == 31.5
    with pytest.raises(ValueError, match="kind must be 'square' or 'disc'"):
        sprite_coverage("heart", [0.5], [0.5], 64)  # type: ignore[arg-type]


def test_color_sprites_every_factor_visible_and_colours_stay_in_their_region() -> None:
    data = _sprites(background_hues=3, sprite_hues=3, positions=3)
    for base in ([0, 0, 1, 1, 0, 1, 1], [1, 2, 0, 2, 1, 0, 2]):  # disc on the square; apart
        base = np.array(base)
        a = data._square[base[2] * 3 + base[3]]
        b = data._disc[base[5] * 3 + base[6]]
        coverage = {0: (1 - a) * (1 - b), 1: a * (1 - b), 4: b}
        for factor in range(7):
            other = base.copy()
            other[factor] = (other[factor] + 1) % 3
            x, y = _images(data, [base, other]).astype(int)
            changed = (x != y).any(-1)
            assert changed.mean() > 0.005, (base, factor)
            if factor in coverage:
                assert not (changed & (coverage[factor] == 0)).any()
                assert changed[coverage[factor] == 1].all()


def test_color_sprites_subgrid_cache_and_errors() -> None:
    small = _sprites(background_hues=2, sprite_hues=2, positions=2, image_size=32)
    assert small.factor_sizes == (2, 2, 2, 2, 2, 2, 2) and small.observation_shape == (32, 32, 3)
    uncached = _sprites(background_hues=2, sprite_hues=2, positions=2, image_size=32, cache_mib=0)
    assert small._cache is not None and uncached._cache is None
    np.testing.assert_array_equal(small.images_uint8, uncached.uint8_from_indices(np.arange(128)))
    for field, value, match in [
        ("positions", 1, "data.positions must be an integer >= 2"),
        ("sprite_hues", 0, "data.sprite_hues must be an integer >= 2"),
        ("image_size", 16, "data.image_size must be 64 or 32"),
        ("cache_mib", -5, "data.cache_mib must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            _sprites(**{field: value})
