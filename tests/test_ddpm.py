"""The pixel DDPM (``ddpm``): its loss is Ho et al.'s eps-MSE, its sampler is deterministic under
a generator, it refuses to be evaluated with one line, its presets build; and the one pixel-range
conversion (:mod:`disentkit.pixels`) is what training, metrics and pictures see."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from disentkit.config import ConfigError, load_config, preset_names
from disentkit.errors import UserError
from disentkit.metrics import representation_from_model
from disentkit.models.base import NoRepresentationError
from disentkit.models.ddpm import DDPM, DDPMConfig
from disentkit.nn.unet import count_parameters
from disentkit.pixels import from_model_range, to_model_input, to_model_range

TINY = {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_ds": [2],
        "norm_groups": 8}


def _tiny(size: int = 16, **changes) -> DDPM:
    torch.manual_seed(0)
    changes.setdefault("num_steps", 50)
    return DDPM(DDPMConfig(unet_overrides=TINY, **changes), (1, size, size))


# ---- the objective ------------------------------------------------------------------------------
class _RecordingUNet(nn.Module):
    """Stands in for the UNet: remembers (x_t, t) and predicts a fixed function of them."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen = (x.clone(), t.clone())
        return 0.5 * x + t.float()[:, None, None, None] / 100.0


def test_training_loss_is_the_eps_mse_of_ho_et_al() -> None:
    model = _tiny()
    model.unet = _RecordingUNet()
    x0 = torch.rand(6, 1, 16, 16) * 2 - 1
    losses = model.training_losses(x0, step=0, generator=torch.Generator().manual_seed(7))
    # the same draws by hand: t ~ U{0..T-1}, then eps ~ N(0, I)
    gen = torch.Generator().manual_seed(7)
    t = torch.randint(0, 50, (6,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    abar = model.schedule.alpha_bars[t].float()[:, None, None, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    seen_x, seen_t = model.unet.seen
    assert torch.equal(seen_t, t)
    assert torch.allclose(seen_x, x_t, atol=1e-6)
    expected = ((0.5 * x_t + t.float()[:, None, None, None] / 100.0 - eps) ** 2).mean()
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_draws_t_from_the_whole_schedule() -> None:
    model = _tiny()
    model.unet = _RecordingUNet()
    gen = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(20):
        model.training_losses(torch.zeros(64, 1, 16, 16), 0, gen)
        seen.append(model.unet.seen[1])
    seen = torch.cat(seen)
    assert seen.min() == 0 and seen.max() == 49
    assert 20 < seen.float().mean() < 29  # uniform on 0..49 has mean 24.5


def test_a_few_steps_lower_the_loss() -> None:
    model = _tiny(size=8)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(16, 1, 8, 8) - 1
    x0[:, :, 2:6, 2:6] = 1  # one white square: easy to denoise
    first = [model.training_losses(x0, 0, gen)["loss"].item() for _ in range(4)]
    for _ in range(20):
        loss = model.training_losses(x0, 0, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = [model.training_losses(x0, 0, gen)["loss"].item() for _ in range(4)]
    assert np.mean(last) < 0.7 * np.mean(first)


# ---- sampling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler, steps", [("ddim", 4), ("ddpm", None)])
def test_sampling_is_deterministic_under_a_generator(sampler, steps) -> None:
    model = _tiny(size=8, num_steps=20).eval()
    a = model.sample(3, torch.Generator().manual_seed(1), steps=steps, sampler=sampler)
    b = model.sample(3, torch.Generator().manual_seed(1), steps=steps, sampler=sampler)
    c = model.sample(3, torch.Generator().manual_seed(2), steps=steps, sampler=sampler)
    assert a.shape == (3, 1, 8, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # x0 is clipped to [-1, 1] in every step (unclipped, the zero-initialised net gives |x0| ~ 1/sqrt(abar));
    # the last DDIM step lands on abar_0 = 0.9999, which keeps 1% noise
    assert a.abs().max() < 1.1


def test_ddim_sample_calls_the_network_sample_steps_times() -> None:
    model = _tiny(sample_steps=3).eval()
    calls = []
    model.denoise = lambda x, t: calls.append(int(t[0])) or torch.zeros_like(x)
    model.sample(2, torch.Generator().manual_seed(0))
    assert len(calls) == 3 and calls == sorted(calls, reverse=True) and calls[0] == 49


def test_ddpm_sampler_takes_no_step_count() -> None:
    with pytest.raises(ConfigError, match="ddpm sampler runs all T=50 steps"):
        _tiny().sample(1, steps=5, sampler="ddpm")


# ---- no representation --------------------------------------------------------------------------
def test_metrics_refuse_a_ddpm_with_one_line() -> None:
    model = _tiny()
    with pytest.raises(NoRepresentationError, match="^ddpm has no representation to evaluate") as err:
        representation_from_model(model)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    with pytest.raises(NoRepresentationError):
        model.encode(torch.zeros(1, 1, 16, 16))


# ---- config and presets -------------------------------------------------------------------------
def test_unet_settings_are_checked_when_the_config_loads() -> None:
    base = ["model.name=ddpm", "data.name=sprites", "data.image_size=32"]
    with pytest.raises(ConfigError, match="unknown UNet setting 'base_chanels'"):
        load_config(None, [*base, "model.unet_overrides.base_chanels=8"])
    with pytest.raises(ConfigError, match="image channels come from the data"):
        load_config(None, [*base, "model.unet_overrides.in_channels=3"])
    with pytest.raises(ConfigError, match="unknown UNet preset 'nope'"):
        load_config(None, [*base, "model.unet=nope"])
    with pytest.raises(ConfigError, match="norm_groups=7"):
        load_config(None, [*base, "model.unet_overrides.norm_groups=7"])
    with pytest.raises(ConfigError, match="model.num_steps"):
        load_config(None, [*base, "model.num_steps=1"])


def test_image_sides_must_fit_the_unet() -> None:
    with pytest.raises(ConfigError, match="divisible by 2, got 15x15"):
        DDPM(DDPMConfig(unet_overrides=TINY), (1, 15, 15))


def test_every_ddpm_preset_loads_without_evaluation_at_the_end() -> None:
    names = [n for n in preset_names() if n.startswith("ddpm/")]
    assert {"ddpm/smoke", "ddpm/sprites", "ddpm/shapes3d_like", "ddpm/celeba64", "ddpm/ffhq128",
            "ddpm/bedroom128"} <= set(names)
    for name in names:
        config = load_config(name)
        assert config.model.name == "ddpm" and config.eval.at_end is False, name


@pytest.mark.parametrize("preset, shape, expected", [
    # the frozen base of PDAE's ShiftUNet with Diff-AE's CelebA64 DDPM settings: 115,965,830 total
    # minus 52,007,811 trainable (tests/test_nn_parameter_parity.py)
    ("ddpm/celeba64", (3, 64, 64), 63_958_019),
    # Diff-AE's FFHQ128 / Bedroom128 DDPM settings: 177.1 M - 78.5 M = 98.6 M
    ("ddpm/ffhq128", (3, 128, 128), 98_618_499),
    ("ddpm/bedroom128", (3, 128, 128), 98_618_499),
])
def test_paper_presets_build_on_the_meta_device(preset, shape, expected) -> None:
    config = load_config(preset)
    with torch.device("meta"):
        model = DDPM(config.model.params, shape)
    assert count_parameters(model) == expected
    assert config.model.num_steps == 1000 and config.model.schedule == "linear"
    assert config.train.ema_decay == 0.9999 and config.optim.lr == 1e-4


# ---- one pixel conversion -----------------------------------------------------------------------
def test_pixel_conversion_round_trips_and_maps_the_ends() -> None:
    batch = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 1, 3, 1)  # NHWC
    pm1 = to_model_input(batch, 255, "pm1")
    assert pm1.shape == (1, 1, 1, 3)
    assert torch.allclose(pm1.flatten(), torch.tensor([-1.0, -0.6, 1.0]))
    assert torch.allclose(to_model_input(batch, 255, "01").flatten(), torch.tensor([0.0, 0.2, 1.0]))
    x = torch.rand(2, 3, 4, 4)
    for rng in ("01", "pm1"):
        assert torch.allclose(from_model_range(to_model_range(x, rng), rng), x, atol=1e-6)
    assert from_model_range(torch.tensor([-3.0, 3.0]), "pm1").tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="input_range"):
        to_model_range(x, "0255")


class _RangeProbe(nn.Module):
    """A pm1 model whose code is each image's (min, max) and whose reconstruction is its input."""

    input_range = "pm1"

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return torch.stack([flat.min(1).values, flat.max(1).values], dim=1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :1, None, None].expand(-1, 1, 2, 2)


def test_metrics_and_pictures_see_the_models_range() -> None:
    from disentkit.viz.latents import encode_batched
    from disentkit.viz.reconstruction import reconstruct
    from disentkit.viz.traversal import decode_codes

    observations = np.zeros((2, 4, 4, 1), np.float32)
    observations[:, 0, 0] = 1.0  # black images with one white pixel, NHWC in [0, 1]
    codes = representation_from_model(_RangeProbe())(observations)
    assert codes.tolist() == [[-1.0, 1.0], [-1.0, 1.0]]  # the model saw [-1, 1]
    images01 = torch.from_numpy(observations).permute(0, 3, 1, 2)
    assert encode_batched(_RangeProbe(), images01).tolist() == [[-1.0, 1.0], [-1.0, 1.0]]
    # its outputs, in [-1, 1], are shown back in [0, 1]: the reconstruction equals the original
    assert torch.allclose(reconstruct(_RangeProbe(), images01), images01)
    decoded = decode_codes(_RangeProbe(), torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))
    assert decoded[:, 0, 0, 0].tolist() == [0.0, 0.5, 1.0]
