"""Latent traversals: which codes reach the decoder, image sizes, ordering, files written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from disentkit.data.base import ArrayGroundTruthData
from disentkit.models.vae import BetaVAE, BetaVAEConfig
from disentkit.viz.images import label_grid, make_grid, save_gif, to_uint8
from disentkit.viz.latents import mi_matrix, order_latents
from disentkit.viz.traversal import (
    fixed_indices,
    quantile_values,
    range_values,
    seed_codes,
    traversal_codes,
    traversal_images,
    write_traversals,
)


class RecordingModel(torch.nn.Module):
    """A 'model' whose decoder paints code values into images and records every code it gets."""

    input_range = "01"

    def __init__(self, latent_dim: int = 4, size: int = 8) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.size = size
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.decoded: list[torch.Tensor] = []

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # mean brightness of the four image quadrants (deterministic, depends on the image)
        h = x.shape[-1] // 2
        quads = [x[..., :h, :h], x[..., :h, h:], x[..., h:, :h], x[..., h:, h:]]
        return torch.stack([q.mean(dim=(1, 2, 3)) for q in quads], dim=1)[:, : self.latent_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.decoded.append(z.detach().clone())
        img = torch.sigmoid(z.sum(dim=1))[:, None, None, None]
        return img.expand(-1, 1, self.size, self.size)


def tiny_data() -> ArrayGroundTruthData:
    rng = np.random.RandomState(0)
    images = (rng.rand(2 * 3, 8, 8, 1) * 255).astype(np.uint8)
    return ArrayGroundTruthData(images, ["a", "b"], [2, 3])


def test_range_values_match_kfv_grid() -> None:
    # KFV: torch.arange(-3, 3 + 0.1, 2 / 3) -> 10 values from -3 to 3
    expected = np.arange(-3, 3.1, 2 / 3)
    np.testing.assert_allclose(range_values(3.0, 10).numpy(), expected, atol=1e-6)


def test_only_the_traversed_latent_changes_in_decoded_codes() -> None:
    model = RecordingModel(latent_dim=4)
    base = torch.tensor([[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]])
    dims = [2, 0, 3]
    values = range_values(2.0, 5)
    images = traversal_images(model, base, dims, values)
    assert images.shape == (2, 3, 5, 1, 8, 8)
    fed = torch.cat(model.decoded).reshape(2, 3, 5, 4)
    for b in range(2):
        for r, d in enumerate(dims):
            for s in range(5):
                code = fed[b, r, s]
                assert code[d] == pytest.approx(float(values[s]))
                others = [i for i in range(4) if i != d]
                torch.testing.assert_close(code[others], base[b, others])


def test_per_latent_values_and_bad_shapes() -> None:
    base = torch.zeros(1, 3)
    per_latent = torch.tensor([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]])
    codes = traversal_codes(base, [1, 2], per_latent)
    assert codes[0, 0, :, 1].tolist() == [10.0, 11.0]
    assert codes[0, 1, :, 2].tolist() == [20.0, 21.0]
    assert codes[0, 0, :, 2].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="out of range"):
        traversal_codes(base, [3], torch.zeros(2))
    with pytest.raises(ValueError, match="values must be"):
        traversal_codes(base, [0], torch.zeros(2, 2))


def test_quantile_values_are_per_latent_quantiles() -> None:
    codes = torch.stack([torch.arange(101.0), -torch.arange(101.0)], dim=1)
    q = quantile_values(codes, steps=3, tail=0.1)
    np.testing.assert_allclose(q.numpy(), [[10, 50, 90], [-90, -50, -10]], atol=1e-4)


def test_seed_codes_modes() -> None:
    model = RecordingModel(latent_dim=4)
    data = tiny_data()
    fixed = seed_codes(model, "fixed", data=data, num_fixed=3)
    assert fixed.codes.shape == (3, 4)
    assert fixed_indices(len(data), 3) == [1, 3, 5]
    x = torch.from_numpy(data.images_uint8[[1, 3, 5]]).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(fixed.codes, model.encode(x))
    assert seed_codes(model, "zero").codes.abs().sum() == 0
    normal = seed_codes(model, "prior", num_prior=500, seed=1).codes
    assert abs(float(normal.mean())) < 0.1 and abs(float(normal.std()) - 1) < 0.1
    uniform = seed_codes(model, "prior", num_prior=500, prior="uniform").codes
    assert float(uniform.min()) >= 0 and float(uniform.max()) < 1
    a = seed_codes(model, "random", data=data, seed=3).codes
    torch.testing.assert_close(a, seed_codes(model, "random", data=data, seed=3).codes)
    with pytest.raises(ValueError, match="no dataset"):
        seed_codes(model, "fixed")
    with pytest.raises(ValueError, match="unknown traversal mode"):
        seed_codes(model, "sideways")


def test_grid_and_labels_sizes() -> None:
    tiles = np.zeros((3, 5, 16, 16, 3), np.uint8)
    grid = make_grid(tiles, pad=2, min_tile=64)  # 16 px tiles are upscaled 4x to 64
    assert grid.shape == (3 * 66 + 2, 5 * 66 + 2, 3)
    assert (grid[2:66, 2:66] == 0).all() and (grid[:2] == 255).all()
    labelled = label_grid(grid, ["z0", "z1", "z2"], [str(i) for i in range(5)], title="t")
    assert labelled.width > grid.shape[1] and labelled.height > grid.shape[0]
    # the grid is pasted unchanged in the bottom-right corner
    pasted = np.asarray(labelled)[-grid.shape[0]:, -grid.shape[1]:]
    np.testing.assert_array_equal(pasted, grid)
    with pytest.raises(ValueError, match="uint8 tiles"):
        make_grid(np.zeros((3, 16, 16, 3)))


def test_to_uint8_round_trip_and_grey_to_rgb() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.7]).reshape(1, 1, 2, 2)
    out = to_uint8(x)
    assert out.shape == (1, 2, 2, 3)
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 255]]
    assert (out[..., 0] == out[..., 2]).all()


def test_save_gif_frames(tmp_path) -> None:
    frames = [Image.new("RGB", (10, 8), (i * 40, 0, 0)) for i in range(4)]
    path = save_gif(frames, tmp_path / "a.gif", bounce=True)
    with Image.open(path) as gif:
        assert gif.n_frames == 6  # 0 1 2 3 2 1
        assert gif.size == (10, 8)
        assert gif.info["loop"] == 0


def test_write_traversals_files_and_sizes(tmp_path) -> None:
    model = RecordingModel(latent_dim=4)
    data = tiny_data()
    order = order_latents(4, "index")
    written = write_traversals(model, tmp_path, order, data=data, values=range_values(3, 6),
                               num_fixed=2, num_prior=2)
    assert [p.name for p in written["fixed"]] == ["traverse_fixed_0.png", "traverse_fixed_1.png",
                                                  "traverse_fixed.gif"]
    assert len(written["random"]) == 2 and len(written["zero"]) == 2 and len(written["prior"]) == 3
    with Image.open(written["zero"][0]) as png:
        # 8 px tiles -> 64 px, 6 columns, 4 rows, plus label margins
        assert png.width > 6 * 66 + 2 and png.height > 4 * 66 + 2
    with Image.open(written["fixed"][-1]) as gif:
        assert gif.n_frames == 6 + 4  # bounce: 6 forward, 4 back


def test_order_latents() -> None:
    kl = np.array([0.5, 3.0, 0.0, 1.0])
    by_kl = order_latents(4, "kl", activity=kl)
    assert by_kl.dims == [1, 3, 0, 2]
    assert by_kl.labels[0] == "z1 KL 3.00"
    mi = np.array([[0.1, 0.7], [0.8, 0.0], [0.6, 0.1], [0.01, 0.02]])
    by_factor = order_latents(4, "factor", activity=np.ones(4), mi=mi, factor_names=["shape", "x"])
    assert by_factor.dims == [1, 2, 0, 3]
    assert by_factor.labels[:3] == ["z1 shape 0.80", "z2 shape 0.60", "z0 x 0.70"]
    # a collapsed latent (KL ~ 0) is not credited with a factor
    collapsed = order_latents(4, "factor", activity=np.array([1, 0.0, 1, 1]), mi=mi)
    assert collapsed.dims == [2, 0, 3, 1]
    assert collapsed.labels[-1] == "z1 (none)"
    assert order_latents(4, "kl", max_latents=2, activity=kl).dims == [1, 3]
    fallback = order_latents(4, "factor", activity=kl)
    assert fallback.criterion == "kl" and fallback.notes
    with pytest.raises(ValueError, match="unknown latent order"):
        order_latents(4, "alphabetical")


def test_mi_matrix_finds_the_factor_a_latent_copies() -> None:
    """An encoder that reads factor b out of the image: MI(z0; b) / H(b) = 1, MI(z0; a) = 0."""
    sizes = (2, 5)
    images = np.zeros((10, 4, 4, 1), np.uint8)
    for i in range(10):
        a, b = divmod(i, 5)
        images[i, 0, 0, 0] = 50 * b  # pixel (0, 0) encodes factor b
        images[i, 3, 3, 0] = 7  # constant
    data = ArrayGroundTruthData(images, ["a", "b"], sizes)

    class Reader(torch.nn.Module):
        latent_dim = 2

        def encode(self, x):
            return torch.stack([x[:, 0, 0, 0], x[:, 0, 3, 3]], dim=1)

    mi = mi_matrix(Reader(), data, num_points=2000, seed=0)
    assert mi.shape == (2, 2)
    assert mi[0, 1] == pytest.approx(1.0, abs=1e-9)
    assert mi[0, 0] < 0.01 and np.allclose(mi[1], 0.0)


def test_real_vae_traversal_shapes(tmp_path) -> None:
    torch.manual_seed(0)
    model = BetaVAE(BetaVAEConfig(latent_dim=4), (1, 32, 32)).eval()
    images = traversal_images(model, torch.zeros(2, 4), [3, 1], range_values(3, 7))
    assert images.shape == (2, 2, 7, 1, 32, 32)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
