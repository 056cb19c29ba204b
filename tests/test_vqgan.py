"""DisDiff's stage 1 (``vqgan``, ``klvae``): taming's legacy VQ loss and straight-through gradient,
the adaptive GAN weight at the decoder's last conv, the discriminator's start step, one backward with
blocked cross-gradients, the KL variant's loss, the optional LPIPS term from user-supplied weights,
and the reference parameter counts of the autoencoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from disentkit.config import ConfigError, from_dict
from disentkit.models.base import NoRepresentationError
from disentkit.models.vqgan import KLVAE, VQGAN, KLVAEConfig, VQGANConfig, hinge_d_loss
from disentkit.nn.ldm_autoencoder import AutoencoderConfig, LatentAutoencoder
from disentkit.nn.lpips_vgg import CHANNELS, vgg16_features
from disentkit.nn.patchgan import PatchDiscriminator
from disentkit.nn.vector_quantizer import VectorQuantizer

TINY_AE = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 3, "embed_dim": 3,
           "n_embed": 16, "norm_groups": 4}


def _vqgan(**changes) -> VQGAN:
    torch.manual_seed(0)
    params = {"autoencoder": dict(TINY_AE), "disc_layers": 2, "disc_channels": 8, **changes}
    return VQGAN(from_dict(VQGANConfig, params, "model"), (3, 16, 16))


def _klvae(**changes) -> KLVAE:
    torch.manual_seed(0)
    ae = {**TINY_AE, "quantize": False, "z_channels": 2, "embed_dim": 2}
    params = {"autoencoder": ae, "disc_layers": 2, "disc_channels": 8, **changes}
    return KLVAE(from_dict(KLVAEConfig, params, "model"), (3, 16, 16))


def _batch(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


# ---- the vector quantiser -----------------------------------------------------------------------
def _hand_quantizer() -> tuple[VectorQuantizer, torch.Tensor]:
    vq = VectorQuantizer(2, 2, beta=0.25)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    # one image, 2 channels, 1 x 2 positions: (0.2, 0.1) is nearest e0, (0.9, 1.2) nearest e1
    z = torch.tensor([[[[0.2, 0.9]], [[0.1, 1.2]]]], requires_grad=True)
    return vq, z


def test_vq_loss_is_taming_legacy_form_on_a_hand_made_case() -> None:
    vq, z = _hand_quantizer()
    out = vq(z)
    assert out.indices.tolist() == [[[0, 1]]]
    # squared differences (0.2, 0.1) and (-0.1, 0.2): mean 0.025 for both terms
    assert out.loss.item() == pytest.approx(0.025 + 0.25 * 0.025, abs=1e-7)
    out.loss.backward()
    e = torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]])
    # legacy: the *unweighted* term trains the encoder (d/dz = 2 (z - e) / 4), beta the codebook
    torch.testing.assert_close(z.grad, 0.5 * (z.detach() - e))
    expected_codebook = torch.tensor([[0.25 * 0.5 * -0.2, 0.25 * 0.5 * -0.1],
                                      [0.25 * 0.5 * 0.1, 0.25 * 0.5 * -0.2]])
    torch.testing.assert_close(vq.embedding.weight.grad, expected_codebook)


def test_quantiser_output_is_the_codebook_with_a_straight_through_gradient() -> None:
    vq, z = _hand_quantizer()
    out = vq(z)
    torch.testing.assert_close(out.z_q.detach(), torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]]))
    weights = torch.tensor([[[[1.0, 2.0]], [[3.0, -4.0]]]])
    (out.z_q * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # the identity's gradient
    assert vq.embedding.weight.grad is None or not vq.embedding.weight.grad.any()



def test_nearest_codes_are_chosen_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(512, 3)
    z = torch.randn(4, 3, 8, 8) * 0.01  # codes 2/512 apart: bf16 distances would confuse them
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = vq(z).indices
    assert torch.equal(mixed, vq(z).indices)

# ---- the GAN terms --------------------------------------------------------------------------------
def test_adaptive_weight_is_the_gradient_norm_ratio_at_the_decoders_last_conv() -> None:
    model = _vqgan(disc_weight=0.75)
    x = _batch()
    logged = model.training_losses(x, step=0)
    # by hand, with two separate backward passes into decoder.conv_out.weight
    ae = model.autoencoder
    rec = ae.decode_latent(ae.quantize(ae.moments(x)).z_q, quantize=False)
    nll = (x - rec).abs().mean()
    g = -model.discriminator(rec).mean()
    last = ae.decoder.conv_out.weight
    assert last is ae.last_layer
    model.zero_grad()
    nll.backward(retain_graph=True)
    nll_grad = last.grad.clone()
    model.zero_grad()
    g.backward()
    g_grad = last.grad.clone()
    expected = (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, 1e4) * 0.75
    assert logged["d_weight"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert logged["d_weight"].item() > 0


def test_discriminator_is_off_before_its_start_step_and_on_from_it() -> None:
    x = _batch()
    before = _vqgan(disc_start=2)
    losses = before.training_losses(x, step=1)
    assert losses["disc_factor"].item() == 0 and losses["d_weight"].item() == 0
    losses["loss"].backward()
    assert all(not g.any() for g in _grads(before.discriminator))  # present but zero (DDP-safe)
    # the autoencoder gets the reconstruction and codebook gradients only
    ref = _vqgan(disc_start=2)
    ae = ref.autoencoder
    q = ae.quantize(ae.moments(x))
    rec = ae.decode_latent(q.z_q, quantize=False)
    ((x - rec).abs().mean() + q.loss).backward()
    for ga, gr in zip(_grads(before.autoencoder), _grads(ref.autoencoder)):
        torch.testing.assert_close(ga, gr)

    after = _vqgan(disc_start=2)
    losses = after.training_losses(x, step=2)
    assert losses["disc_factor"].item() == 1.0 and losses["d_weight"].item() > 0
    losses["loss"].backward()
    assert any(g.any() for g in _grads(after.discriminator))
    changed = zip(_grads(after.autoencoder), _grads(ref.autoencoder))
    assert any((ga - gr).abs().max() > 0 for ga, gr in changed)


def test_one_backward_blocks_the_cross_gradients() -> None:
    """g puts no gradient on D (D's grads do not depend on the generator weight) and L_D none on
    the autoencoder (with a zero generator weight its grads are those of nll + L_q alone)."""
    x = _batch()

    def run(disc_weight: float) -> VQGAN:
        model = _vqgan(disc_weight=disc_weight)
        model.training_losses(x, step=0)["loss"].backward()
        return model

    a, b = run(0.0), run(5.0)
    for ga, gb in zip(_grads(a.discriminator), _grads(b.discriminator)):
        torch.testing.assert_close(ga, gb)
    assert any(g.any() for g in _grads(a.discriminator))
    # the discriminator loss by hand: hinge on detached real and reconstructed images
    ref = _vqgan()
    ae = ref.autoencoder
    q = ae.quantize(ae.moments(x))
    rec = ae.decode_latent(q.z_q, quantize=False)
    d_loss = hinge_d_loss(ref.discriminator(x), ref.discriminator(rec.detach()))
    ((x - rec).abs().mean() + q.loss + d_loss).backward()
    for ga, gr in zip(_grads(a.autoencoder), _grads(ref.autoencoder)):
        torch.testing.assert_close(ga, gr)
    for ga, gr in zip(_grads(a.discriminator), _grads(ref.discriminator)):
        torch.testing.assert_close(ga, gr)
    assert any((ga - gb).abs().max() > 0 for ga, gb in zip(_grads(a.autoencoder), _grads(b.autoencoder)))


def test_two_optimisers_hold_disjoint_parameters() -> None:
    model = _vqgan(disc_lr=2e-5)
    ae_spec, d_spec = model.optimiser_specs()
    ae_ids = {id(p) for g in ae_spec.param_groups for p in g["params"]}
    d_ids = {id(p) for g in d_spec.param_groups for p in g["params"]}
    assert ae_ids.isdisjoint(d_ids) and d_spec.lr == 2e-5
    assert ae_ids | d_ids == {id(p) for p in model.parameters()}


# ---- the KL variant -------------------------------------------------------------------------------
def test_klvae_loss_is_the_learned_variance_l1_plus_the_weighted_kl() -> None:
    model = _klvae(kl_weight=0.01)
    with torch.no_grad():
        model.logvar.fill_(0.5)
    x = _batch()
    torch.manual_seed(11)
    losses = model.training_losses(x, step=0)  # before disc_start (50,001): no GAN term
    ae = model.autoencoder
    mean, logvar = ae.posterior(x)
    torch.manual_seed(11)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    rec = ae.decode_latent(z)
    nll = ((x - rec).abs() / torch.exp(torch.tensor(0.5)) + 0.5).sum() / 4
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum() / 4
    assert losses["nll"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert losses["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert losses["ae_loss"].item() == pytest.approx(nll.item() + 0.01 * kl.item(), rel=1e-5)
    assert losses["disc_factor"].item() == 0
    losses["loss"].backward()
    # d nll / d s = sum(1 - |x - x^| e^-s) / B: the log-variance learns the L1 scale
    expected = (1 - (x - rec.detach()).abs() * torch.exp(torch.tensor(-0.5))).sum() / 4
    assert model.logvar.grad.item() == pytest.approx(expected.item(), rel=1e-4)


def test_each_model_refuses_the_other_kind_of_autoencoder() -> None:
    with pytest.raises(ConfigError, match="use model klvae"):
        _vqgan(autoencoder={**TINY_AE, "quantize": False})
    with pytest.raises(ConfigError, match="use model vqgan"):
        _klvae(autoencoder=dict(TINY_AE))
    with pytest.raises(ConfigError, match="at least 24 px"):
        _vqgan(disc_layers=3)
    with pytest.raises(NoRepresentationError):
        _vqgan().encode(_batch())


# ---- LPIPS from user-supplied weights -------------------------------------------------------------
def test_perceptual_loss_refuses_missing_weights_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _vqgan(perceptual_weight=1.0)
    assert "model.lpips_vgg" in str(err.value) and "\n" not in str(err.value)
    missing = tmp_path / "vgg16.pth"
    with pytest.raises(ConfigError) as err:
        _vqgan(perceptual_weight=1.0, lpips_vgg=str(missing), lpips_lin=str(tmp_path / "lin.pth"))
    assert str(missing) in str(err.value) and "does not exist" in str(err.value)
    assert "\n" not in str(err.value)


def _lpips_files(tmp_path: Path) -> tuple[Path, Path]:
    """A VGG16 trunk state_dict in torchvision's key layout and LPIPS heads in theirs, saved with
    torch.save as the real files are (random weights: the format is what is tested)."""
    torch.manual_seed(5)
    trunk = torch.nn.Module()
    trunk.features = vgg16_features()
    vgg, lin = tmp_path / "vgg16.pth", tmp_path / "vgg_lin.pth"
    torch.save(trunk.state_dict(), vgg)
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}, lin)
    return vgg, lin


def test_perceptual_loss_runs_with_user_weights(tmp_path: Path) -> None:
    vgg, lin = _lpips_files(tmp_path)
    model = _vqgan(perceptual_weight=1.0, lpips_vgg=str(vgg), lpips_lin=str(lin))
    assert model.frozen_modules == ("perceptual",)
    assert not any(p.requires_grad for p in model.perceptual.parameters())
    x = _batch(2)
    assert model.perceptual(x, x).abs().max().item() < 1e-6
    assert (model.perceptual(x, -x) > 0).all()
    losses = model.training_losses(x, step=0)
    ae = model.autoencoder
    rec = ae.decode_latent(ae.quantize(ae.moments(x)).z_q, quantize=False)
    expected = (x - rec).abs().mean() + model.perceptual(x, rec).mean()
    assert losses["nll"].item() == pytest.approx(expected.item(), rel=1e-5)
    losses["loss"].backward()
    assert all(p.grad is None for p in model.perceptual.parameters())
    ids = {id(p) for spec in model.optimiser_specs() for g in spec.param_groups for p in g["params"]}
    assert ids.isdisjoint(id(p) for p in model.perceptual.parameters())


def test_lpips_refuses_a_file_that_is_not_the_vgg16_layout(tmp_path: Path) -> None:
    _, lin = _lpips_files(tmp_path)
    wrong = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ConfigError, match="lacks features.0.weight"):
        _vqgan(perceptual_weight=1.0, lpips_vgg=str(wrong), lpips_lin=str(lin))
    pickled = tmp_path / "pickled.pth"
    torch.save({"weights": object()}, pickled)  # needs pickle: weights_only refuses it
    with pytest.raises(ConfigError, match="not a readable torch state_dict"):
        _vqgan(perceptual_weight=1.0, lpips_vgg=str(pickled), lpips_lin=str(lin))


# ---- parameter parity -----------------------------------------------------------------------------
def test_disdiff_vq_autoencoder_has_the_reference_parameter_counts() -> None:
    """DisDiff ``configs/autoencoder/shapes3d_vq_4_16.yaml`` instantiated: encoder 1,403,363,
    decoder 2,068,547, codebook 2048 x 3 (counted from the reference classes)."""
    with torch.device("meta"):
        ae = LatentAutoencoder(AutoencoderConfig(), 3, 64)
        disc = PatchDiscriminator(3, 64, 3)

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(ae.encoder) == 1_403_363
    assert count(ae.decoder) == 2_068_547
    assert count(ae.quantizer) == 6_144
    assert count(ae.quant_conv) == count(ae.post_quant_conv) == 12
    # pix2pix's 3-layer PatchGAN (ndf 64, BatchNorm, bias-free convs before BN), from its layer shapes
    assert count(disc) == 2_765_633


def test_autoencoder_maps_64_px_to_16_x_16_x_3_and_decodes_back() -> None:
    torch.manual_seed(0)
    ae = LatentAutoencoder(AutoencoderConfig(ch=8, norm_groups=4, n_embed=32), 3, 64)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    z = ae.encode_latent(x)
    assert z.shape == (1, 3, 16, 16)
    assert ae.decode_latent(z).shape == (1, 3, 64, 64)
    # decode_latent quantises first; quantize=False decodes the latent as it is
    torch.testing.assert_close(ae.decode_latent(z), ae.decode_latent(ae.quantize(z).z_q, quantize=False))
    assert not torch.equal(ae.decode_latent(z), ae.decode_latent(z, quantize=False))
