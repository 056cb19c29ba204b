"""The FDAE model (``fdae``): masks, the N = 1 baseline, the auxiliary losses against naive loops
written from their definitions, the EDM loss weighting on a hand-computed case, sampling with the
condition map computed once, determinism under a seed, its presets, and a short run through the
engine. Every network is tiny (16/32 px, B <= 4, <= 5 sampler steps)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from disentkit.cli import main
from disentkit.config import ConfigError, load_config, preset_names
from disentkit.diffusion.samplers import heun_sample
from disentkit.errors import UserError
from disentkit.models import fdae as fdae_module
from disentkit.models.fdae import (
    FDAE,
    FDAEConfig,
    NoCodePriorError,
    content_decorrelation_loss,
    mask_entropy_loss,
)
from disentkit.nn.unet import count_parameters

TINY = dict(unet="tiny_fdae", unet_overrides={"base_channels": 16, "head_channels": 16, "norm_groups": 8},
            content_dim=4, mask_dim=3, cond_dim=8, encoder_widths=[8, 8, 16, 16], encoder_blocks=[1, 1, 1, 1],
            mask_channels=[8, 8], mask_norm_groups=4, sample_steps=3)


def _tiny(n: int = 3, size: int = 16, **changes) -> FDAE:
    torch.manual_seed(0)
    return FDAE(FDAEConfig(num_concepts=n, **{**TINY, **changes}), (3, size, size))


def _images(b: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---- codes and masks ----------------------------------------------------------------------------
def test_masks_sum_to_one_at_every_pixel() -> None:
    model = _tiny(n=3)
    with torch.no_grad():
        content, mask_codes = model.content_and_mask_codes(_images())
        masks = model.masks_from_codes(mask_codes)
    assert masks.shape == (4, 3, 16, 16)
    assert torch.allclose(masks.sum(1), torch.ones(4, 16, 16), atol=1e-6)
    assert masks.min() >= 0
    # a softmax of distinct logits, not a constant 1/N
    assert (masks - 1 / 3).abs().max() > 1e-3
    # the flat (B, N d_m) layout gives the same masks
    assert torch.equal(model.masks_from_codes(mask_codes.flatten(1)), masks)


def test_code_layout_is_content_blocks_then_mask_blocks() -> None:
    model = _tiny(n=3).eval()
    x = _images()
    with torch.no_grad():
        codes = model.encode(x)
        content, mask_codes = model.content_and_mask_codes(x)
    assert codes.shape == (4, model.latent_dim) == (4, 3 * (4 + 3))
    assert torch.equal(codes[:, :12].reshape(4, 3, 4), content)
    assert torch.equal(codes[:, 12:].reshape(4, 3, 3), mask_codes)
    groups = model.code_groups()
    assert groups[0] == [0, 1, 2, 3] and groups[2] == [8, 9, 10, 11]
    assert groups[3] == [12, 13, 14] and groups[5] == [18, 19, 20]
    back = model.split_codes(codes)
    assert torch.equal(back[0], content) and torch.equal(back[1], mask_codes)
    assert FDAE.default_protocol == "fdae"
    with pytest.raises(ConfigError, match="an FDAE code has 21 numbers"):
        model.split_codes(codes[:, :20])


def test_one_concept_is_the_diffae_baseline_with_a_mask_of_ones() -> None:
    model = _tiny(n=1)
    assert model.cmfnet.mask_decoder is None
    x = _images()
    content, mask_codes = model.content_and_mask_codes(x)
    masks = model.masks_from_codes(mask_codes)
    assert torch.equal(masks, torch.ones(4, 1, 16, 16))
    # the condition map is the adjusted content code at every pixel
    cond = model.condition_map(content, mask_codes)
    adjusted = model.cmfnet.content_adjust[0](content[:, 0])
    assert torch.allclose(cond, adjusted[:, :, None, None].expand(-1, -1, 16, 16))
    losses = model.training_losses(x, 0, torch.Generator().manual_seed(0))
    assert losses["cd"].item() == 0.0 and losses["me"].item() == 0.0
    # nothing trains the mask head, so it holds no trainable parameter (and DDP sees no unused one)
    assert not any(p.requires_grad for p in model.cmfnet.mask_head.parameters())
    losses["loss"].backward()
    assert model.cmfnet.content_head.weight.grad is not None


# ---- the auxiliary losses -----------------------------------------------------------------------
def _naive_cd(content: torch.Tensor, scaling: str) -> float:
    """L_CD by loops from its definition (wuancong/FDAE edm/losses.py; the paper's Eq.)."""
    b, n, d = content.shape
    c = content.double().tolist()
    means = [[sum(c[i][g][k] for i in range(b)) / b for k in range(d)] for g in range(n)]
    z = [[[c[i][g][k] - means[g][k] for k in range(d)] for g in range(n)] for i in range(b)]
    for i in range(b):
        for g in range(n):
            norm = math.sqrt(sum(v * v for v in z[i][g]))
            z[i][g] = [v / norm for v in z[i][g]]
    total, pairs = 0.0, 0
    for g1 in range(n):
        for g2 in range(n):
            if g1 == g2:
                continue
            if scaling == "code":  # vectors divided by N, |sum over batch and dims|, mean over pairs
                s = sum((z[i][g1][k] / n) * (z[i][g2][k] / n) for i in range(b) for k in range(d))
                total += abs(s)
            else:  # the covariance over the batch, summed over the pairs
                total += abs(sum(z[i][g1][k] * z[i][g2][k] for i in range(b) for k in range(d)) / (b - 1))
            pairs += 1
    return total / pairs if scaling == "code" else total


@pytest.mark.parametrize("scaling", ["code", "paper"])
def test_content_decorrelation_equals_a_naive_double_loop(scaling) -> None:
    content = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(3))
    content[:, 1] += 0.7 * content[:, 0]  # correlated concepts, so the value is not tiny
    assert content_decorrelation_loss(content, scaling).item() == pytest.approx(_naive_cd(content, scaling),
                                                                                rel=1e-5)
    # the two scalings differ by N^3 (N - 1) / (B - 1) (27 * 2 / 4 here)
    if scaling == "paper":
        code = content_decorrelation_loss(content, "code").item()
        paper = content_decorrelation_loss(content, "paper").item()
        assert paper == pytest.approx(code * 27 * 2 / 4, rel=1e-5)


@pytest.mark.parametrize("scaling", ["code", "paper"])
def test_mask_entropy_equals_a_naive_loop(scaling) -> None:
    logits = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    masks = torch.softmax(logits, dim=1)
    b, n, h, w = masks.shape
    total = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                total += -sum(float(masks[i, k, y, x]) * math.log(float(masks[i, k, y, x]) + 1e-20)
                              for k in range(n))
    expected = total / (b * h * w) / (n if scaling == "paper" else 1)
    assert mask_entropy_loss(masks, scaling).item() == pytest.approx(expected, rel=1e-5)
    # uniform masks have entropy ln N; one-hot masks 0
    assert mask_entropy_loss(torch.full((1, 4, 2, 2), 0.25)).item() == pytest.approx(math.log(4), rel=1e-6)
    assert mask_entropy_loss(torch.eye(3)[None, :, :, None].expand(1, 3, 3, 2)).item() == pytest.approx(0.0)


# ---- the EDM objective ---------------------------------------------------------------------------
class _OnesUNet(nn.Module):
    """Stands in for the UNet: F = 1 everywhere; remembers its inputs."""

    def forward(self, x, t, cond_map=None):
        self.seen = (x.clone(), t.clone(), cond_map)
        return torch.ones_like(x)


def test_edm_loss_weighting_on_a_hand_computed_case(monkeypatch) -> None:
    model = _tiny(n=2, cd_weight=0.0, me_weight=0.0)
    model.unet = _OnesUNet()
    sigmas = torch.tensor([0.5, 2.0])
    monkeypatch.setattr(fdae_module, "_lognormal", lambda edm, n, device, generator: sigmas)
    monkeypatch.setattr(fdae_module, "_randn", lambda like, generator: torch.ones_like(like))
    x0 = torch.zeros(2, 3, 16, 16)
    losses = model.training_losses(x0, 0)
    # x_sigma = x0 + sigma * 1 = sigma; D = c_skip sigma + c_out * 1, with sigma_data = 0.5:
    #   sigma 0.5: c_skip = 0.25 / 0.5 = 0.5, c_out = 0.25 / sqrt(0.5), lambda = 1/0.25 + 4 = 8
    #   sigma 2:   c_skip = 0.25 / 4.25,      c_out = 1 / sqrt(4.25),   lambda = 1/4 + 4 = 4.25
    d1 = 0.5 * 0.5 + 0.25 / math.sqrt(0.5)
    d2 = 0.25 / 4.25 * 2 + 1 / math.sqrt(4.25)
    expected = (8 * d1 ** 2 + 4.25 * d2 ** 2) / 2
    assert losses["rec"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss"].item() == pytest.approx(expected, rel=1e-5)
    x_in, t, cond = model.unet.seen
    # the network sees c_in x_sigma and c_noise = 250 ln sigma, with the condition map
    assert torch.allclose(x_in[0], torch.full((3, 16, 16), 0.5 / math.sqrt(0.5)))
    assert torch.allclose(t, 250 * torch.log(sigmas))
    assert cond.shape == (2, 8, 16, 16)


def test_training_draws_log_normal_sigmas_and_trains_every_part() -> None:
    model = _tiny(n=2)
    model.unet = _OnesUNet()
    gen = torch.Generator().manual_seed(7)
    model.training_losses(_images(4), 0, gen)
    ln_sigma = model.unet.seen[1] / 250  # c_noise = 250 ln sigma
    z = torch.randn(4, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(ln_sigma, -1.2 + 1.2 * z, atol=1e-5)
    real = _tiny(n=2)
    # ADM zero-initialises the output convolution (and the residual branches' last ones), so at
    # step 0 only it receives gradient through the UNet; one trained output layer opens the path
    nn.init.normal_(real.unet.out[-1].weight, std=0.1)
    losses = real.training_losses(_images(4), 0, torch.Generator().manual_seed(0))
    assert set(losses) == {"loss", "rec", "cd", "me"}
    losses["loss"].backward()
    for name in ("cmfnet.trunk.conv1.weight", "cmfnet.mask_head.weight", "cmfnet.mask_decoder.fc.weight",
                 "cmfnet.content_adjust.1.weight", "unet.stem_in.weight"):
        grad = dict(real.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


# ---- sampling ------------------------------------------------------------------------------------
def _count_calls(module: nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_condition_map_computed_once_equals_recomputing_it_every_call() -> None:
    model = _tiny(n=2).eval()
    x = _images(2)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    trunk_calls, mask_calls, unet_calls = (_count_calls(m) for m in
                                           (model.cmfnet.trunk, model.cmfnet.mask_decoder, model.unet))
    cached = model.decode(model.encode(x), noise=noise, steps=3)
    assert (len(trunk_calls), len(mask_calls), len(unet_calls)) == (1, 1, 5)  # Heun 3 steps: 5 NFE

    def recomputing(x_t, sigma):  # the reference: CMFNet on the conditioning image at every call
        return model.denoised(x_t, sigma, model.cmfnet(x))

    with torch.no_grad():
        reference = heun_sample(recomputing, model.edm, noise, 3, clip_denoised=True)
    assert len(trunk_calls) == 1 + 5
    assert torch.allclose(cached, reference, atol=1e-6)
    assert cached.abs().max() <= 1.0 + 1e-5  # the denoised image is clamped at every evaluation


@pytest.mark.parametrize("sampler, evaluations", [("heun", 5), ("euler", 3)])
def test_decoding_is_deterministic_under_a_seed(sampler, evaluations) -> None:
    model = _tiny(n=2).eval()
    with torch.no_grad():
        codes = model.encode(_images(2))
    calls = _count_calls(model.unet)
    a = model.decode(codes, generator=torch.Generator().manual_seed(1), sampler=sampler)
    assert len(calls) == evaluations
    b = model.decode(codes, generator=torch.Generator().manual_seed(1), sampler=sampler)
    c = model.decode(codes, generator=torch.Generator().manual_seed(2), sampler=sampler)
    assert a.shape == (2, 3, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # one noise image is shared by the codes: equal codes give equal images
    same = model.decode(codes[:1].expand(2, -1), generator=torch.Generator().manual_seed(1), sampler=sampler)
    assert torch.equal(same[0], same[1])


def test_unconditional_sampling_is_refused_in_one_line() -> None:
    with pytest.raises(NoCodePriorError, match="^fdae cannot draw unconditional samples") as err:
        _tiny().sample(4)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown FDAE sampler 'ddim'"):
        _tiny().decode(torch.zeros(1, 21), sampler="ddim")
    with pytest.raises(ConfigError, match=r"noise must have shape \(2 or 1, 3, 16, 16\)"):
        _tiny().decode(torch.zeros(2, 21), noise=torch.zeros(2, 3, 8, 8))


# ---- config and presets --------------------------------------------------------------------------
def test_settings_are_checked_when_the_config_loads() -> None:
    base = ["model.name=fdae", "data.name=shapes3d_like", "data.image_size=32"]
    with pytest.raises(ConfigError, match="set model.cond_dim instead"):
        load_config(None, [*base, "model.unet_overrides.stem_channels=8"])
    with pytest.raises(ConfigError, match="mask_norm_groups=32 does not divide"):
        load_config(None, [*base, "model.mask_channels=[16,8]"])
    with pytest.raises(ConfigError, match="model.num_concepts"):
        load_config(None, [*base, "model.num_concepts=0"])
    with pytest.raises(ConfigError, match="aux_scaling"):
        load_config(None, [*base, "model.aux_scaling=both"])


PAPER = {"fdae/shapes3d": ("shapes3d", 6), "fdae/mpi3d_real_complex": ("mpi3d", 6),
         "fdae/cars3d": ("cars3d", 2)}


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_presets_have_the_reference_settings(preset) -> None:
    config = load_config(preset)
    data, n = PAPER[preset]
    model = config.model.params
    assert config.data.name == data and model.num_concepts == n
    assert (model.content_dim, model.mask_dim, model.cond_dim) == (80, 80, 80)
    assert (config.train.batch_size, config.train.steps, config.train.ema_decay) == (32, 100_000, None)
    assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("radam", 1e-4, 0.0)
    assert (model.cd_weight, model.me_weight, model.aux_scaling) == (2.5e-5, 1e-4, "code")
    assert config.train.precision == "bf16-mixed"
    with torch.device("meta"):
        net = FDAE(model, (3, 64, 64))
    # the EDM UNet of edm/unet.py (281,535,299) + CMFNet (14,790,561 at N = 6)
    # (N = 2: heads 2 x Linear 512 -> 160 and two adjusters, 88,560 fewer per concept)
    cmfnet = 14_790_561 if n == 6 else 14_436_321
    assert count_parameters(net.unet) == 281_535_299
    assert count_parameters(net.cmfnet) == cmfnet


def test_every_fdae_preset_loads() -> None:
    names = [n for n in preset_names() if n.startswith("fdae/")]
    assert {"fdae/smoke", "fdae/shapes3d_like", *PAPER} <= set(names)
    sweep = [n for n in names if "n_sweep" in n]
    assert len(sweep) == 5
    for name in names:
        config = load_config(name)
        assert config.model.name == "fdae", name
    for name in sweep:  # MPI3D real-complex, d_r = 3 for every N (Table 5)
        config = load_config(name)
        assert config.data.name == "mpi3d" and config.eval.protocol == "fdae"


# ---- through the engine --------------------------------------------------------------------------
def test_smoke_preset_trains_three_steps_through_the_engine(tmp_path: Path) -> None:
    assert main(["train", "preset=fdae/smoke", f"out_dir={tmp_path}", "name=run"]) == 0
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        for key in ("loss", "rec", "cd", "me"):
            assert math.isfinite(record[key]), key
    from disentkit.run_loading import load_run

    loaded = load_run(run)
    assert isinstance(loaded.model, FDAE) and loaded.model.image_shape == (3, 32, 32)
    codes = loaded.model.encode(torch.zeros(1, 3, 32, 32))
    assert codes.shape == (1, 2 * (8 + 8))


def test_a_training_step_runs_under_bf16_autocast() -> None:
    """The paper presets train in bf16-mixed: the losses stay float32 and finite, the masks still
    sum to 1 (softmax in float32)."""
    model = _tiny(n=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.training_losses(_images(2), 0, torch.Generator().manual_seed(0))
        masks = model.masks_from_codes(model.content_and_mask_codes(_images(2))[1])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert masks.dtype == torch.float32
    assert torch.allclose(masks.sum(1), torch.ones(2, 16, 16), atol=1e-6)
    losses["loss"].backward()


@pytest.mark.learning  # asserts a training outcome
def test_a_few_dozen_steps_lower_the_denoising_loss() -> None:
    model = _tiny(n=2)
    opt = torch.optim.RAdam(model.parameters(), 2e-3)
    x0 = torch.full((4, 3, 16, 16), -1.0)
    x0[:, :, 4:12, 4:12] = 1  # one white square: easy to denoise

    def held_out() -> float:  # the same sigmas, noise and dropout every time
        torch.manual_seed(1)
        with torch.no_grad():
            return model.training_losses(x0, 0, torch.Generator().manual_seed(123))["rec"].item()

    first = held_out()
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        loss = model.training_losses(x0, 0, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    # measured 0.68 of the first value after 40 steps (RAdam's first steps are rectified, small)
    assert held_out() < 0.8 * first
