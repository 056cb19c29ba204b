"""The procedural ``sprites`` dataset: grid layout, hand-computed geometry, agreement with real dSprites."""

from __future__ import annotations

import numpy as np
import pytest

from disentkit.data.procedural import ORIENTATIONS, POSITIONS, ProceduralSprites, render_sprites
from disentkit.registry import DATASETS


def _small(**kw) -> ProceduralSprites:
    return ProceduralSprites(ProceduralSprites.Config(**kw))


def test_registered_with_dlib_factor_layout() -> None:
    data = DATASETS.get("sprites")()
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data.factor_sizes == (3, 6, 40, 32, 32)
    assert len(data) == 737280
    assert data.value_max == 1
    assert data.observation_shape == (64, 64, 1)
    # posY fastest, as in the official file: index = classes @ [245760, 40960, 1024, 32, 1]
    factors = np.array([[2, 5, 39, 31, 31], [1, 3, 7, 2, 9]])
    np.testing.assert_array_equal(
        data.factors_to_index(factors), factors @ np.array([245760, 40960, 1024, 32, 1])
    )


def test_square_matches_hand_computed_extent() -> None:
    # scale 1, orientation 0, posX = posY = 0: centre (16, 16), half side 9.6 -> pixel centres
    # c + 0.5 in [6.4, 25.6] -> rows and columns 6..25.
    image = render_sprites([0], [1.0], [0.0], [0.0], [0.0])[0]
    expected = np.zeros((64, 64), np.uint8)
    expected[6:26, 6:26] = 1
    np.testing.assert_array_equal(image, expected)


def test_values_are_binary_and_orientation_wraps() -> None:
    data = _small(orientations=40, positions=4, cache_mib=0)
    factors = np.array([[s, 5, k, 1, 2] for s in range(3) for k in (0, 39)])
    images = data.uint8_from_indices(data.factors_to_index(factors))
    assert images.dtype == np.uint8 and set(np.unique(images)) <= {0, 1}
    # orientation 0 and 2*pi are the same image for every shape (a dSprites quirk)
    np.testing.assert_array_equal(images[0::2], images[1::2])
    assert images.sum() > 0


def test_rotation_is_counter_clockwise_on_screen() -> None:
    # Ellipse, major axis horizontal at theta = 0; at ~46 degrees counter-clockwise (y down) the
    # right end of the major axis moves up: more pixels up-right than down-right of the centre.
    image = render_sprites([1], [1.0], [ORIENTATIONS[5]], [0.5], [0.5])[0]
    centre = 32
    up_right = image[:centre, centre:].sum()
    down_right = image[centre:, centre:].sum()
    assert up_right > 1.5 * down_right
    flat = render_sprites([1], [1.0], [0.0], [0.5], [0.5])[0]
    rows, cols = np.nonzero(flat)
    assert np.ptp(cols) > 1.5 * np.ptp(rows)


def test_subgrid_takes_every_kth_value_and_rejects_non_divisors() -> None:
    data = _small(orientations=10, positions=16)
    assert data.factor_sizes == (3, 6, 10, 16, 16)
    np.testing.assert_allclose(data.orientation_values, ORIENTATIONS[::4])
    np.testing.assert_allclose(data.position_values, POSITIONS[::2])
    full = ProceduralSprites()
    sub = data.factors_to_index(np.array([[2, 3, 1, 5, 7]]))
    same = full.factors_to_index(np.array([[2, 3, 4, 10, 14]]))
    np.testing.assert_array_equal(data.uint8_from_indices(sub), full.uint8_from_indices(same))
    with pytest.raises(ValueError, match="orientations must divide 40.*allowed"):
        _small(orientations=7)
    with pytest.raises(ValueError, match="positions must divide 32"):
        _small(positions=12)


def test_cache_and_on_demand_rendering_agree() -> None:
    cached = _small(orientations=4, positions=4)
    uncached = _small(orientations=4, positions=4, cache_mib=0)
    assert cached._cache is not None and uncached._cache is None
    indices = np.random.RandomState(0).randint(0, len(cached), size=200)
    np.testing.assert_array_equal(cached.uint8_from_indices(indices), uncached.uint8_from_indices(indices))
    batch = cached.uint8_batch(indices[:64])
    assert tuple(batch.shape) == (64, 64, 64, 1) and str(batch.dtype) == "torch.uint8"
    assert cached.images_uint8.shape == (len(cached), 64, 64, 1)
    with pytest.raises(IndexError):
        cached.uint8_from_indices(np.array([len(cached)]))


def test_observations_float_in_unit_range() -> None:
    data = _small(orientations=4, positions=8)
    rs = np.random.RandomState(1)
    factors = data.sample_factors(16, rs)
    obs = data.sample_observations_from_factors(factors, rs)
    assert obs.dtype == np.float32 and obs.shape == (16, 64, 64, 1)
    assert obs.min() == 0.0 and obs.max() == 1.0


def test_image_size_32_is_area_downsample() -> None:
    big = _small(orientations=4, positions=4)
    small = _small(orientations=4, positions=4, image_size=32)
    assert small.value_max == 255 and small.observation_shape == (32, 32, 1)
    indices = np.arange(0, len(big), 7)
    hi = big.uint8_from_indices(indices)[..., 0].astype(np.int64)
    lo = small.uint8_from_indices(indices)[..., 0]
    counts = hi.reshape(-1, 32, 2, 32, 2).sum(axis=(2, 4))
    np.testing.assert_array_equal(lo, np.array([0, 64, 128, 191, 255])[counts])


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a > 0, b > 0
    return (a & b).sum(axis=(1, 2)) / np.maximum((a | b).sum(axis=(1, 2)), 1)


def test_matches_real_dsprites_subset(shared_data) -> None:
    with np.load(shared_data / "dsprites_subset.npz", allow_pickle=True, encoding="latin1") as f:
        real, classes = f["imgs"][::4], f["latents_classes"][::4]
        original = f["original_dataset_indices"][::4]
    data = ProceduralSprites()
    np.testing.assert_array_equal(data.factors_to_index(classes), original)
    iou = _iou(data.uint8_from_indices(original)[..., 0], real)
    thresholds = {0: 0.999, 1: 0.998, 2: 0.997}  # square, ellipse, heart (docs/datasets.md)
    for shape, threshold in thresholds.items():
        assert iou[classes[:, 0] == shape].mean() > threshold


def test_matches_real_downsampled_grid(shared_data) -> None:
    with np.load(shared_data / "dsprites_downsampled.npz", allow_pickle=True, encoding="latin1") as f:
        real = f["imgs"][::5]
    data = _small(orientations=10, positions=16, cache_mib=0)
    iou = _iou(data.uint8_from_indices(np.arange(0, len(data), 5))[..., 0], real)
    assert iou.mean() > 0.998


def test_device_resident_batches_match_host_batches() -> None:
    data = _small(orientations=4, positions=4)
    indices = np.array([5, 0, 17, 5])
    host = data.uint8_batch(indices).clone()
    data.to("cpu")
    assert data._device_images is not None
    assert torch_equal(data.uint8_batch(indices), host)


def torch_equal(a, b) -> bool:
    return bool((a == b).all()) and a.shape == b.shape
