"""pdae (issue 12): the PDAE objective, the frozen base, EMA scope, the encoders' sizes and the
deterministic shifted DDIM (sampling, inversion, reconstruction, interpolation)."""

from __future__ import annotations

import pytest
import torch

from disentkit.config import ConfigError, load_config
from disentkit.models.pdae import PDAE, PDAEConfig, slerp
from disentkit.nn.unet import count_parameters
from disentkit.training.ema import EMA

TINY = dict(latent_dim=8, unet="tiny_pdae", num_steps=100, encoder="custom", encoder_channels=[16, 32],
            encoder_attention_after=1, encoder_norm_groups=8,
            unet_overrides={"base_channels": 16, "norm_groups": 8}, sample_steps=3)


def _model(seed: int = 0, **changes) -> PDAE:
    torch.manual_seed(seed)
    return PDAE(PDAEConfig(**{**TINY, **changes}), (3, 16, 16))


def _live_shift(model: PDAE, seed: int = 1) -> None:
    """Perturb the shift decoder (its zero-initialised convolutions make G = 0 and the code
    irrelevant), so that G depends on z."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.shift.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_zero_initialised_shift_gives_the_lambda_weighted_base_loss() -> None:
    model = _model(flip=False)
    x = _images()
    loss = model.training_losses(x, 0, torch.Generator().manual_seed(3))["loss"]
    g = torch.Generator().manual_seed(3)  # the same draws: t, then the noise
    t = torch.randint(0, 100, (4,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        eps = model.base(model.schedule.q_sample(x, t, noise), t)
    snr = model.schedule.alpha_bars[t] / (1 - model.schedule.alpha_bars[t])
    weight = (snr ** 0.1 / (1 + snr)).float()
    expected = (weight * ((noise - eps) ** 2).mean(dim=(1, 2, 3))).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    # and the shift enters with c_t: a live decoder changes the loss
    _live_shift(model)
    assert not torch.allclose(model.training_losses(x, 0, torch.Generator().manual_seed(3))["loss"], expected)


def test_flips_come_from_the_generator() -> None:
    model = _model()
    x = _images()
    a = model.training_losses(x, 0, torch.Generator().manual_seed(5))["loss"]
    b = model.training_losses(x, 0, torch.Generator().manual_seed(5))["loss"]
    assert torch.equal(a, b)
    flipped = PDAE._flip(x, torch.Generator().manual_seed(5))
    kept = (flipped == x).flatten(1).all(1)
    assert kept.any() and (~kept).any()  # with this seed some images flip and some do not
    assert torch.equal(flipped[~kept], x[~kept].flip(-1))


def test_base_is_frozen_out_of_the_optimiser_and_bit_identical_after_steps() -> None:
    model = _model()
    _live_shift(model)
    before = {k: v.clone() for k, v in model.base.state_dict().items()}
    params = [p for spec in model.optimiser_specs() for group in spec.param_groups for p in group["params"]]
    base_ids = {id(p) for p in model.base.parameters()}
    assert params and not base_ids & {id(p) for p in params}
    encoder_before = [p.clone() for p in model.encoder.parameters()]
    optimiser = torch.optim.Adam(params, lr=1e-2)
    model.train()
    assert not model.base.training  # frozen: no dropout, eval mode through model.train()
    for step in range(2):
        optimiser.zero_grad()
        loss = model.training_losses(_images(seed=step), step, torch.Generator().manual_seed(step))["loss"]
        loss.backward()
        assert all(p.grad is None for p in model.base.parameters())
        optimiser.step()
    assert all(torch.equal(before[k], v) for k, v in model.base.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, model.encoder.parameters()))


def test_ema_covers_the_encoder_and_the_shift_decoder_only() -> None:
    model = _model()
    ema = EMA(model, 0.9, model.ema_modules)
    assert sorted(ema.state_dict()) == ["encoder", "shift"]


@pytest.mark.parametrize("name, expected", [("celeba64", 1_487_104), ("ffhq128", 3_914_240)])
def test_encoder_presets_have_the_reference_parameter_counts(name: str, expected: int) -> None:
    side = 64 if name == "celeba64" else 128
    config = PDAEConfig(encoder=name, unet="pdae_celeba64" if side == 64 else "pdae_ffhq128")
    with torch.device("meta"):
        model = PDAE(config, (3, side, side))
    assert count_parameters(model.encoder) == expected


def test_ddim_inversion_and_decoding_are_deterministic_and_use_the_code() -> None:
    model = _model()
    _live_shift(model)
    model.eval()
    x = _images(2)
    z = model.encode(x)
    x_T = model.invert(x, 5, z)
    assert torch.equal(x_T, _rebuilt().invert(x, 5, z))
    out = model.decode(z, x_T, 5)
    assert torch.equal(out, model.decode(z, x_T, 5)) and out.shape == x.shape
    assert not torch.allclose(out, model.decode(z + 1.0, x_T, 5), atol=1e-4)  # the shift is used
    # decode(z) alone starts every code from one noise map drawn with the seed
    assert torch.equal(model.decode(z, steps=5), model.decode(z, steps=5, seed=0))
    assert not torch.equal(model.decode(z, steps=5), model.decode(z, steps=5, seed=1))
    same = model.decode(z[:1].expand(2, -1), steps=5)
    assert torch.allclose(same[0], same[1])
    assert torch.equal(model.reconstruct(x, 5), model.decode(z, x_T, 5))


def _rebuilt() -> PDAE:
    model = _model()
    _live_shift(model)
    return model.eval()


def test_interpolation_and_counterfactual_end_points() -> None:
    model = _rebuilt()
    x_a, x_b = _images(1, 1), _images(1, 2)
    path = model.interpolate(x_a, x_b, [0.0, 1.0], 3)
    assert path.shape == (2, 1, 3, 16, 16)
    assert torch.allclose(path[0], model.reconstruct(x_a, 3), atol=1e-5)
    assert torch.allclose(path[1], model.reconstruct(x_b, 3), atol=1e-5)
    grid = model.counterfactual(x_a, x_b, [(0, 2), (2, 6)], [0.0, 1.0], 3)
    assert grid.shape == (2, 2, 1, 3, 16, 16)
    assert torch.allclose(grid[0, 0], model.reconstruct(x_a, 3), atol=1e-5)
    # B's context (the reference's second row): alpha 1 is B, alpha 0 is B with A's segment
    both = model.counterfactual(x_a, x_b, [(0, 2), (2, 6)], [0.0, 1.0], 3, context="both")
    assert both.shape == (4, 2, 1, 3, 16, 16)
    assert torch.allclose(both[0::2], grid, atol=1e-5)
    assert torch.allclose(both[1, 1], model.reconstruct(x_b, 3), atol=1e-5)
    assert torch.allclose(both[3, 1], model.reconstruct(x_b, 3), atol=1e-5)
    only_b = model.counterfactual(x_a, x_b, [(0, 2)], [0.0, 1.0], 3, context="b")
    assert torch.allclose(only_b[0], both[1], atol=1e-5)
    z_a, z_b = model.encode(x_a), model.encode(x_b)
    keep = model.code_mask(0, 2)
    swapped = z_b - z_b * keep + z_a * keep  # B's code with A's first two dimensions
    assert torch.allclose(both[1, 0], model.decode(swapped, model.invert(x_a, 3, z_a), 3), atol=1e-5)
    with pytest.raises(ConfigError, match="do not fit"):
        model.code_mask(6, 4)


def test_slerp_keeps_the_end_points_and_the_norm_of_orthogonal_maps() -> None:
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(), torch.tensor(1.0)) and torch.allclose(mid[0, 0], mid[0, 1])


def test_bad_encoder_settings_fail_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="encoder_channels"):
        load_config("pdae/smoke", ["model.encoder=custom", "model.encoder_channels=[]"])
    with pytest.raises(ConfigError, match="encoder = custom"):
        load_config("pdae/smoke", ["model.encoder=celeba64"])
    with pytest.raises(ConfigError, match="unknown UNet preset"):
        load_config("pdae/smoke", ["model.unet=nope"])


def test_sampling_without_a_code_is_refused_in_one_line() -> None:
    from disentkit.errors import UserError
    from disentkit.training.samples import check_can_sample

    with pytest.raises(UserError, match="no prior over its codes"):
        _model().sample(2)
    with pytest.raises(ConfigError, match="log.images_every = 10 .* no prior over its codes"):
        check_can_sample(_model(), 10)  # before training starts, not at the first grid


def _family_presets() -> list[str]:
    from disentkit.config import preset_names

    return [n for n in preset_names() if n.split("/")[0] in ("pdae", "diti")]


@pytest.mark.parametrize("name", _family_presets())
def test_every_preset_repeats_its_upstream_ddpm_network_schedule_and_data(name: str) -> None:
    config = load_config(name)
    upstream = load_config(config.init.preset)
    assert upstream.model.name == "ddpm"
    assert config.init.modules == ["base=unet"] and config.init.freeze == ["base"]
    mine, theirs = config.model.params, upstream.model.params
    channels = 1 if config.data.name == "sprites" else 3
    assert mine.unet_config(channels) == theirs.unet_config(channels)
    assert (mine.schedule, mine.num_steps) == (theirs.schedule, theirs.num_steps)
    assert config.data == upstream.data


@pytest.mark.parametrize("name, side, trainable", [
    ("pdae/celeba64", 64, 53_494_915), ("diti/celeba64", 64, 53_494_915), ("diti/ffhq128", 128, 82_436_611)])
def test_paper_presets_train_the_reference_encoder_and_shift_decoder(name: str, side: int,
                                                                     trainable: int) -> None:
    from disentkit.builders import build_model
    from disentkit.models.base import DataFacts

    config = load_config(name)
    with torch.device("meta"):
        model = build_model(config, DataFacts((3, side, side)))
    # ShiftUNet 115,965,830 / 52,007,811 trainable (Diff-AE's CelebA64 DDPM) + the 1,487,104 encoder
    assert count_parameters(model.encoder) + count_parameters(model.shift) == trainable
    assert config.train.batch_size == 128 and config.optim.lr == pytest.approx(1e-4 * 128 / 32)


def test_a_new_run_without_an_upstream_base_is_refused_in_one_line() -> None:
    """A PDAE on a random 'frozen' base trains a shift decoder against noise: apply_init refuses
    a new run whose init names no upstream run, and a resumed run (weights from its own
    checkpoint) is let through."""
    import dataclasses

    from disentkit.config import InitConfig, load_config
    from disentkit.errors import ConfigError
    from disentkit.training.stages import apply_init

    config = dataclasses.replace(load_config("pdae/smoke"), init=InitConfig())
    model = _model()
    with pytest.raises(ConfigError, match=r"pdae trains on top of a frozen base .* init\.run=RUN_DIR"):
        apply_init(model, config, resume=False)
    assert apply_init(model, config, resume=True) is config
