"""FDAE's views: swap specs, swapped codes and grids, mask strips, PCA traversals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from disentkit.errors import ConfigError
from disentkit.viz.fdae_views import (
    CONCEPT_COLOURS,
    SwapSpec,
    default_swap_specs,
    fdae_swap_grids,
    mask_strips,
    parse_swap_spec,
    pca_direction,
    pca_traversal_codes,
    swap_grid_tiles,
    swapped_codes,
)

# N = 2 concepts, d = 2: [content_0 | content_1 | mask_0 | mask_1]
GROUPS = [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_parse_swap_spec_reference_notation():
    assert parse_swap_spec("c1,2-m0", 6) == SwapSpec((0, 1), ())
    assert parse_swap_spec("c0-m1,2", 6) == SwapSpec((), (0, 1))
    assert parse_swap_spec("c1,2,3,4,5,6-m0", 6) == SwapSpec(tuple(range(6)), ())
    assert parse_swap_spec("m2", 2) == SwapSpec((), (1,))
    assert parse_swap_spec(" c2 - m1 ", 2) == SwapSpec((1,), (0,))
    assert SwapSpec((0, 1), ()).text == "c1,2-m0"
    assert parse_swap_spec(SwapSpec((2,), (0, 1)).text, 3) == SwapSpec((2,), (0, 1))


@pytest.mark.parametrize("text, why", [
    ("c7-m0", "concept 7 does not exist"),
    ("c1,1", "listed twice"),
    ("c0-m0", "selects no code"),
    ("x1", "cannot read"),
    ("c1-c2", "cannot read"),
    ("ca,b", "not a list of concept numbers"),
    ("", "empty"),
])
def test_parse_swap_spec_errors_are_one_line(text, why):
    with pytest.raises(ConfigError, match=why) as info:
        parse_swap_spec(text, 6)
    assert "\n" not in str(info.value) and "c1,2-m0" in str(info.value)


def test_default_specs():
    assert [s.text for s in default_swap_specs(2)] == ["c1,2-m0", "c0-m1,2"]
    assert [s.text for s in default_swap_specs(1)] == ["c1-m0"]  # N = 1: the mask is all ones
    assert len(default_swap_specs(3, partial=True)) == 2 + 3 + 3


def test_swapped_codes_take_selected_groups_from_the_source():
    targets = torch.arange(8.0)[None].repeat(2, 1) + torch.tensor([[0.0], [100.0]])
    sources = -1 - torch.arange(8.0)[None].repeat(3, 1) - torch.tensor([[0.0], [10.0], [20.0]])
    cells = swapped_codes(targets, sources, parse_swap_spec("c2-m1", 2), GROUPS)
    assert cells.shape == (2, 3, 8)
    for i in range(2):
        for j in range(3):
            from_source = [2, 3, 4, 5]  # content 2 and mask 1
            keep = [0, 1, 6, 7]
            torch.testing.assert_close(cells[i, j, from_source], sources[j, from_source])
            torch.testing.assert_close(cells[i, j, keep], targets[i, keep])
    # the inputs are untouched
    assert targets[0, 2] == 2.0 and sources[0, 2] == -3.0


def test_swap_grid_tiles_layout():
    sources = torch.zeros(2, 3, 4, 4)
    sources[:, 0] = 1.0  # red sources
    targets = torch.zeros(2, 3, 4, 4)
    targets[:, 2] = 1.0  # blue targets
    cells = torch.full((2, 2, 3, 4, 4), 0.5)
    tiles = swap_grid_tiles(sources, targets, cells)
    assert tiles.shape == (3, 3, 4, 4, 3)
    assert (tiles[0, 0] == 255).all()
    assert (tiles[0, 1:, ..., 0] == 255).all() and (tiles[0, 1:, ..., 2] == 0).all()  # row 0: sources
    assert (tiles[1:, 0, ..., 2] == 255).all() and (tiles[1:, 0, ..., 0] == 0).all()  # column 0: targets
    assert (tiles[1:, 1:] == 128).all()
    with pytest.raises(ValueError, match="do not match"):
        swap_grid_tiles(sources[:1], targets, cells)


class _FakeFDAE(torch.nn.Module):
    """encode: the mean colour of each channel spread into the 8 code dims; decode: an image
    whose pixels are code-dependent plus the given noise (records the noise it got)."""

    image_shape = (3, 4, 4)

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.noises: list[torch.Tensor] = []
        self.codes: list[torch.Tensor] = []

    def code_groups(self):
        return GROUPS

    def encode(self, x01):
        means = x01.mean(dim=(2, 3))
        return torch.cat([means[:, :1].repeat(1, 4), means[:, 2:].repeat(1, 4)], 1)

    def decode(self, codes, noise=None, steps=None, generator=None, sampler="heun"):
        self.noises.append(noise.clone())
        self.codes.append(codes.clone())
        red = codes[:, :4].mean(1)  # content codes -> red channel
        blue = codes[:, 4:].mean(1)  # mask codes -> blue channel
        img = torch.zeros(codes.shape[0], 3, 4, 4)
        img[:, 0] = red[:, None, None]
        img[:, 2] = blue[:, None, None]
        return img + 0 * noise


def test_fdae_swap_grids_with_a_fake_model():
    model = _FakeFDAE()
    sources = torch.zeros(2, 3, 4, 4)
    sources[0, 0], sources[1, 2] = 1.0, 1.0
    targets = torch.zeros(2, 3, 4, 4)
    targets[0, 2], targets[1, 0] = 1.0, 1.0
    grids = fdae_swap_grids(model, sources, targets, generator=torch.Generator().manual_seed(0))
    assert list(grids) == ["swap_c1,2-m0", "swap_c0-m1,2"]
    for grid in grids.values():
        assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    # one noise image for every cell of a grid
    noise = model.noises[0]
    assert noise.shape == (4, 3, 4, 4) and torch.equal(noise, noise[:1].expand_as(noise))
    # cell (i, j) = target i's codes with both content codes of source j
    src, tgt = model.encode(sources), model.encode(targets)
    decoded = model.codes[0].reshape(2, 2, 8)
    for i in range(2):
        for j in range(2):
            torch.testing.assert_close(decoded[i, j, :4], src[j, :4])
            torch.testing.assert_close(decoded[i, j, 4:], tgt[i, 4:])
    one = fdae_swap_grids(model, sources, targets, spec="c1,2-m0", generator=torch.Generator().manual_seed(0))
    assert list(one) == ["swap_c1,2-m0"]
    np.testing.assert_array_equal(one["swap_c1,2-m0"], grids["swap_c1,2-m0"])


def test_mask_strips_values_and_argmax():
    images = torch.zeros(1, 3, 2, 2)
    masks = torch.tensor([[[[1.0, 0.0], [0.25, 0.5]], [[0.0, 1.0], [0.75, 0.5]]]])
    tiles = mask_strips(images, masks)
    assert tiles.shape == (1, 4, 2, 2, 3)
    assert tiles[0, 1, 0, 0].tolist() == [255, 255, 255] and tiles[0, 1, 0, 1].tolist() == [0, 0, 0]
    assert tiles[0, 2, 1, 0].tolist() == [191, 191, 191]
    # argmax: top-left concept 1 at full weight, bottom-left concept 2 at weight 0.75
    assert tiles[0, 3, 0, 0].tolist() == CONCEPT_COLOURS[0].tolist()
    np.testing.assert_array_equal(tiles[0, 3, 1, 0], np.rint(CONCEPT_COLOURS[1] * 0.75).astype(np.uint8))
    with pytest.raises(ValueError, match="same B"):
        mask_strips(torch.zeros(2, 3, 2, 2), masks)


def test_pca_direction_recovers_the_main_axis_with_a_fixed_sign():
    g = torch.Generator().manual_seed(0)
    axis = torch.tensor([0.6, -0.8, 0.0])
    t = torch.randn(200, generator=g)
    codes = 5 + t[:, None] * 3 * axis + 0.01 * torch.randn(200, 3, generator=g)
    mean, direction, scores = pca_direction(codes)
    assert abs(float(direction @ axis)) > 0.999
    assert direction[direction.abs().argmax()] > 0
    torch.testing.assert_close(mean, codes.mean(0), atol=1e-5, rtol=0)
    _, flipped, _ = pca_direction(-codes)
    torch.testing.assert_close(flipped, direction, atol=1e-5, rtol=0)  # same sign for the mirror set
    assert scores.shape == (200,)


def test_pca_traversal_codes_move_only_along_the_direction():
    codes = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    direction = torch.tensor([0.6, 0.8])
    dims = [2, 3]
    values = torch.tensor([-1.0, 0.0, 2.0])
    out = pca_traversal_codes(codes, dims, direction, values)
    assert out.shape == (3, 3, 8)
    proj = out[:, :, dims] @ direction
    torch.testing.assert_close(proj, values[None].expand(3, 3))
    ortho = torch.tensor([-0.8, 0.6])
    torch.testing.assert_close(out[:, :, dims] @ ortho, (codes[:, dims] @ ortho)[:, None].expand(3, 3))
    others = [0, 1, 4, 5, 6, 7]
    torch.testing.assert_close(out[:, :, others], codes[:, None, others].expand(3, 3, 6))
