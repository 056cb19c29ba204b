"""VAE-family models: architectures, objectives, gradient isolation, controller state."""

from __future__ import annotations

import math

import pytest
import torch

from disentkit.config import from_dict
from disentkit.models.controlvae import pi_update, setpoint
from disentkit.nn import architectures
from disentkit.registry import MODELS

torch.set_num_threads(1)

VAE_FAMILY = ["vae", "betavae", "annealedvae", "betatcvae", "factorvae", "dipvae", "controlvae",
              "clgvae"]


def make(name: str, shape=(1, 32, 32), **params):
    cls = MODELS.get(name)
    if name == "betatcvae":
        params.setdefault("dataset_size", 1000)
    if name == "clgvae":
        params.setdefault("subgroup_sizes", [16])
    return cls(from_dict(cls.Config, params), shape)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- architectures ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["dlib", "kim", "burgess", "mlp", "clg"])
@pytest.mark.parametrize("size,channels", [(32, 1), (64, 3)])
def test_architectures_shapes(arch: str, size: int, channels: int) -> None:
    if arch == "clg":
        cfg = from_dict(MODELS.get("clgvae").Config, {"latent_dim": 6, "subspace_sizes": [6],
                                                      "subgroup_sizes": [16]})
    else:
        cfg = from_dict(MODELS.get("betavae").Config, {"architecture": arch, "latent_dim": 6})
    enc, dec = architectures.build(cfg, (channels, size, size))
    mean, logvar = enc(torch.rand(2, channels, size, size))
    assert mean.shape == logvar.shape == (2, 6)
    assert dec(mean).shape == (2, channels, size, size)


def test_dlib_parameter_counts_match_reference() -> None:
    # dlib conv_encoder/deconv_decoder: encoder 383k (4x4) / 309k (dlib 2x2), decoder 381k (C = 1).
    betavae = MODELS.get("betavae")
    k4 = betavae(from_dict(betavae.Config, {}), (1, 64, 64))
    k2 = betavae(from_dict(betavae.Config, {"dlib_kernel2": True}), (1, 64, 64))
    assert n_params(k4.encoder) == 382_932
    assert n_params(k2.encoder) == 309_204
    assert n_params(k4.decoder) == 381_313
    assert k2.encode(torch.rand(2, 1, 64, 64)).shape == (2, 10)


def test_dlib_three_stages_keep_a_4x4_map_at_32px() -> None:
    # Encoder: convs 1->32, 32->32, 32->64 (4x4 kernels) = 544 + 16,416 + 32,832, FC 1024->256
    # = 262,400, heads 2 x 2,570. Decoder: FC 10->256 (2,816), 256->1024 (263,168), deconvs
    # 64->64 (65,600), 64->32 (32,800), 32->1 (513).
    three = make("betavae", (1, 32, 32), dlib_stages=3)
    assert n_params(three.encoder) == 544 + 16_416 + 32_832 + 262_400 + 2 * 2_570
    assert n_params(three.decoder) == 2_816 + 263_168 + 65_600 + 32_800 + 513
    assert three.encoder.features(torch.rand(2, 1, 32, 32)).shape == (2, 64 * 4 * 4)
    assert three.decoder(torch.zeros(2, 10)).shape == (2, 1, 32, 32)
    four = make("betavae", (1, 32, 32))
    assert four.encoder.features(torch.rand(2, 1, 32, 32)).shape == (2, 64 * 2 * 2)
    with pytest.raises(ValueError, match="dlib_stages applies to architecture 'dlib' only"):
        make("betavae", (1, 32, 32), architecture="kim", dlib_stages=3)

def test_cfasl_backbone_padding_zero_and_dense_dim() -> None:
    model = make("betavae", (1, 64, 64), architecture="cfasl", hidden_dim=128)
    feats = model.encoder.features[:-2](torch.rand(2, 1, 64, 64))  # conv stack only
    assert feats.shape == (2, 64, 2, 2)  # 64 -> 31 -> 14 -> 6 -> 2
    assert model.encoder.features[-1].out_features == 128
    assert not isinstance(model.encoder.features[-1], torch.nn.ReLU)  # no activation after FC
    assert model.decoder(torch.zeros(3, 10)).shape == (3, 1, 64, 64)
    with pytest.raises(ValueError, match="64x64"):
        make("betavae", (1, 32, 32), architecture="cfasl")


def test_init_schemes() -> None:
    zero = make("betavae", architecture="dlib")
    assert all(m.bias.abs().max() == 0 for m in zero.modules() if isinstance(m, torch.nn.Linear))
    kim = make("betavae", architecture="kim", init="normal002")
    w = torch.cat([m.weight.flatten() for m in kim.modules() if isinstance(m, torch.nn.Conv2d)])
    assert w.std().item() == pytest.approx(0.02, rel=0.1)
    u01 = make("betavae", architecture="dlib", init="xavier_u01")
    biases = torch.cat([m.bias for m in u01.modules() if isinstance(m, torch.nn.Linear)])
    assert biases.min() >= 0 and biases.max() <= 1 and biases.std() > 0.2


# ---- the contract, for every model ---------------------------------------------------------
@pytest.mark.parametrize("name", VAE_FAMILY)
def test_losses_finite_logged_and_encode_is_posterior_mean(name: str) -> None:
    torch.manual_seed(0)
    model = make(name)
    batch = torch.rand(8 * getattr(model, "batch_multiplier", 1), 1, 32, 32)
    out = model.training_losses(batch, step=3)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    for key in ("reconstruction", "kl", "kl_per_dim"):
        assert key in out
    assert out["kl_per_dim"].shape == (10,)
    assert all(torch.isfinite(v).all() for v in out.values())
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode(x), model.encode(x))
        assert torch.equal(model.encode(x), model.posterior(x)[0])
        assert model.decode(model.encode(x)).shape == x.shape
        assert 0 <= model.reconstruct(x).min() and model.reconstruct(x).max() <= 1


def test_betavae_loss_is_rec_plus_beta_kl() -> None:
    torch.manual_seed(0)
    out = make("betavae", beta=7.0).training_losses(torch.rand(6, 1, 32, 32), 0)
    torch.testing.assert_close(out["loss"], out["reconstruction"] + 7.0 * out["kl"])


def test_annealed_loss_uses_capacity_ramp() -> None:
    model = make("annealedvae", gamma=100.0, c_max=5.0, ramp_steps=10)
    for step, c in [(0, 0.0), (4, 2.0), (10, 5.0), (50, 5.0)]:
        out = model.training_losses(torch.rand(6, 1, 32, 32), step)
        assert out["capacity"].item() == pytest.approx(c)
        torch.testing.assert_close(out["loss"],
                                   out["reconstruction"] + 100.0 * (out["kl"] - c).abs())


@pytest.mark.parametrize("objective", ["decomposed", "dlib"])
@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_betatcvae_objectives(objective: str, estimator: str) -> None:
    torch.manual_seed(0)
    model = make("betatcvae", beta=6.0, objective=objective, estimator=estimator)
    out = model.training_losses(torch.rand(8, 1, 32, 32), 0)
    reg = out["loss"] - out["reconstruction"]
    if objective == "dlib":
        expected = out["kl"] + 5.0 * out["tc"]
    else:
        expected = out["mi"] + 6.0 * out["tc"] + out["dwkl"]
    torch.testing.assert_close(reg, expected, rtol=1e-5, atol=1e-3)
    warm = make("betatcvae", beta=6.0, beta_warmup_steps=100)
    assert warm.current_beta(25) == pytest.approx(1.5) and warm.current_beta(500) == 6.0


def test_betatcvae_lambda_anneal_weights_dwkl_as_the_authors_code() -> None:
    # rtqichen/beta-tcvae anneal_kl: lambda(t) = max(0, 0.95 - t / T), dwKL weight 1 - lambda
    model = make("betatcvae", beta=3.0, gamma=2.0, lambda_anneal_steps=100)
    assert [model.current_lambda(t) for t in (0, 45, 95, 500)] == pytest.approx([0.95, 0.5, 0.0, 0.0])
    batch = torch.rand(8, 1, 32, 32)
    for step, weight in [(0, 2.0 * 0.05), (45, 2.0 * 0.5), (200, 2.0)]:
        torch.manual_seed(0)
        out = model.training_losses(batch, step)
        assert out["dwkl_weight"].item() == pytest.approx(weight)
        expected = out["reconstruction"] + out["mi"] + 3.0 * out["tc"] + weight * out["dwkl"]
        torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-3)
    # without the anneal the weight is gamma at every step
    assert make("betatcvae", gamma=2.0).current_lambda(0) == 0.0
    with pytest.raises(ValueError, match="decomposed"):
        make("betatcvae", objective="dlib", lambda_anneal_steps=10)
    with pytest.raises(ValueError, match="step counts"):
        make("betatcvae", beta_warmup_steps=-1)


def test_betatcvae_default_estimator_is_the_authors_mws() -> None:
    # rtqichen/beta-tcvae: MWS unless --mss; CFASL's beta-TCVAE uses MSS
    assert MODELS.get("betatcvae").Config().estimator == "mws"
    assert MODELS.get("cfasl_betatcvae").Config().estimator == "mss"


def test_betatcvae_requires_dataset_size() -> None:
    cls = MODELS.get("betatcvae")
    model = cls(from_dict(cls.Config, {}), (1, 32, 32))
    with pytest.raises(ValueError, match="dataset_size"):
        model.training_losses(torch.rand(4, 1, 32, 32), 0)


def test_dipvae_loss() -> None:
    torch.manual_seed(0)
    out = make("dipvae", variant="ii", lambda_od=3.0, lambda_d=2.0).training_losses(
        torch.rand(8, 1, 32, 32), 0)
    torch.testing.assert_close(
        out["loss"], out["reconstruction"] + out["kl"] + 3.0 * out["dip_offdiag"]
        + 2.0 * out["dip_diag"])


# ---- FactorVAE -----------------------------------------------------------------------------
def test_factorvae_density_ratio_tc_is_logit_difference() -> None:
    model = make("factorvae", disc_layers=2, disc_hidden=16)
    last = model.discriminator.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([2.0, -1.0]))
    assert model.discriminator_tc(torch.randn(5, 10)).item() == pytest.approx(3.0)
    torch.manual_seed(1)
    model = make("factorvae", disc_layers=2, disc_hidden=16)
    z = torch.randn(7, 10)
    p = model.discriminator(z).softmax(1)[:, 0]
    torch.testing.assert_close(model.discriminator_tc(z), torch.log(p / (1 - p)).mean())


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("second_batch", [True, False])
def test_factorvae_gradients_are_isolated(second_batch: bool) -> None:
    batch = torch.rand(16, 1, 32, 32)

    def run(gamma: float):
        torch.manual_seed(0)
        model = make("factorvae", gamma=gamma, disc_layers=2, disc_hidden=32,
                     second_batch=second_batch)
        torch.manual_seed(1)
        model.training_losses(batch, 0)["loss"].backward()
        return model

    a, b = run(0.0), run(50.0)
    # The VAE's TC term gives the discriminator no gradient: D grads do not depend on gamma.
    for ga, gb in zip(_grads(a.discriminator), _grads(b.discriminator)):
        torch.testing.assert_close(ga, gb)
    assert any(g.abs().sum() > 0 for g in _grads(a.discriminator))
    # With gamma = 0 the VAE grads equal those of REC + KL alone: the D loss gives them nothing.
    torch.manual_seed(0)
    ref = make("factorvae", gamma=0.0, disc_layers=2, disc_hidden=32, second_batch=second_batch)
    torch.manual_seed(1)
    x = batch[:8] if second_batch else batch
    t = ref.vae_terms(x)
    (t.reconstruction + t.kl_per_dim.sum()).backward()
    for module in ("encoder", "decoder"):
        for ga, gr in zip(_grads(getattr(a, module)), _grads(getattr(ref, module))):
            torch.testing.assert_close(ga, gr)
    # and with gamma > 0 the encoder does get the TC gradient
    assert any((ga - gb).abs().max() > 0 for ga, gb in zip(_grads(a.encoder), _grads(b.encoder)))


def test_factorvae_optimisers_and_batches() -> None:
    model = make("factorvae", disc_lr=2e-5)
    vae_spec, d_spec = model.optimiser_specs()
    vae_ids = {id(p) for g in vae_spec.param_groups for p in g["params"]}
    d_ids = {id(p) for g in d_spec.param_groups for p in g["params"]}
    assert vae_ids.isdisjoint(d_ids)
    assert vae_ids | d_ids == {id(p) for p in model.parameters()}
    assert d_spec.lr == 2e-5 and d_spec.betas == (0.5, 0.9) and vae_spec.lr is None
    assert n_params(model.discriminator) == 5_018_002  # 6 x 1000 (paper / dlib)
    assert n_params(make("factorvae", disc_layers=5).discriminator) == 4_017_002  # 1Konny
    assert model.batch_multiplier == 2
    assert make("factorvae", second_batch=False).batch_multiplier == 1
    with pytest.raises(ValueError, match="even batch"):
        model.training_losses(torch.rand(7, 1, 32, 32), 0)
    out = model.training_losses(torch.rand(8, 1, 32, 32), 0)
    assert 0 <= out["d_accuracy"] <= 1 and 0 < out["d_prob_real"] < 1 and 0 < out["d_prob_perm"] < 1


# ---- ControlVAE ----------------------------------------------------------------------------
def _run_controller(kls, target, anti_windup, kp=0.01, ki=0.1, beta_min=1.0, beta_max=2.0):
    integral = torch.zeros((), dtype=torch.float64)
    prev = torch.tensor(beta_min, dtype=torch.float64)
    betas, integrals = [], []
    for kl in kls:
        out = pi_update(torch.tensor(kl, dtype=torch.float64), target, integral, prev, kp, ki,
                        beta_min, beta_max, anti_windup)
        integral, prev = out["integral"], out["output"]
        betas.append(out["beta"].item())
        integrals.append(integral.item())
    return betas, integrals


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_pi_controller_hand_computed_upper_bound() -> None:
    kls = [3.0, 11.0, 11.0, 0.0, 0.0, 0.0]
    betas, integ = _run_controller(kls, 1.0, "reference")
    p = [0.01 * _sig(-(1.0 - kl)) for kl in kls]
    # e = -2: I = 0.2; e = -10: I = 1.2 and the output 2.21 is clamped to beta_max = 2 ...
    assert integ[:2] == pytest.approx([0.2, 1.2])
    assert betas[0] == pytest.approx(p[0] + 0.2 + 1.0) and betas[1] == 2.0
    # ... after which the reference rule holds I while the output stays above beta_max.
    assert integ[2:] == pytest.approx([1.2] * 4) and betas[2:] == [2.0] * 4
    betas, integ = _run_controller(kls, 1.0, "conditional")
    # conditional integration holds I only while e < 0 pushes further up, then unwinds.
    assert integ == pytest.approx([0.2, 1.2, 1.2, 1.1, 1.0, 0.9])
    assert betas[:5] == pytest.approx([p[0] + 1.2, 2.0, 2.0, 2.0, 2.0])
    assert betas[5] == pytest.approx(p[5] + 0.9 + 1.0)


def test_pi_controller_hand_computed_lower_bound() -> None:
    kls = [0.0, 0.0, 21.0]
    betas, integ = _run_controller(kls, 1.0, "reference", beta_max=None)
    # e = 1: I = -0.1, output 0.9027 < beta_min -> beta = 1, then I is held.
    assert integ == pytest.approx([-0.1, -0.1, -0.1])
    assert betas == [1.0, 1.0, 1.0]
    betas, integ = _run_controller(kls, 1.0, "conditional", beta_max=None)
    assert integ == pytest.approx([-0.1, -0.1, 1.9])
    assert betas[2] == pytest.approx(0.01 * _sig(20.0) + 1.9 + 1.0)


def test_setpoint_schedules() -> None:
    cls = MODELS.get("controlvae").Config
    stair = from_dict(cls, {"kl_target": 16.0})
    # 0-based steps: the reference raises C at its iteration 5000 (1-based), our step 4999
    assert [setpoint(t, stair) for t in (0, 4998, 4999, 9999, 10**7)] == pytest.approx(
        [0.5, 0.5, 0.65, 0.8, 16.0])
    lin = from_dict(cls, {"kl_target": 16.0, "setpoint_schedule": "linear", "ramp_steps": 1000})
    assert [setpoint(t, lin) for t in (0, 500, 1000, 5000)] == pytest.approx([0.5, 8.25, 16, 16])
    const = from_dict(cls, {"kl_target": 3.0, "setpoint_schedule": "constant"})
    assert setpoint(123, const) == 3.0


def test_controlvae_state_in_buffers_and_integral_accumulates() -> None:
    torch.manual_seed(0)
    model = make("controlvae", kl_target=0.5, setpoint_schedule="constant", ki=0.01)
    x = torch.rand(8, 1, 32, 32)
    betas = []
    for step in range(3):
        out = model.training_losses(x * 0 + (step % 2), step)  # KL of random init vs target
        betas.append(out["beta"].item())
        torch.testing.assert_close(out["loss"], out["reconstruction"] + out["beta"] * out["kl"],
                                   rtol=1e-5, atol=1e-4)
    state = model.state_dict()
    assert {"integral", "prev_output", "beta"} <= set(state)
    # Integral = -Ki * sum of errors; it moves (CFASL's port keeps it at 0).
    assert state["integral"].item() != 0.0
    model.eval()
    before = model.integral.clone()
    model.training_losses(x, 10)
    assert torch.equal(model.integral, before)  # eval mode does not update the controller
    clone = make("controlvae", kl_target=0.5, setpoint_schedule="constant", ki=0.01)
    clone.load_state_dict(state)
    assert clone.beta.item() == pytest.approx(betas[-1])


# ---- CLG-VAE -------------------------------------------------------------------------------
def test_clg_basis_penalties_hand_computed() -> None:
    model = make("clgvae", latent_dim=2, subgroup_sizes=[4], subspace_sizes=[2])
    with torch.no_grad():
        model.decoder.bases[0].copy_(torch.tensor([[[0.0, 1.0], [0.0, 0.0]],
                                                   [[0.0, 0.0], [1.0, 0.0]]]))
    # B1 B2 = diag(1, 0), B2 B1 = diag(0, 1): ||.||^2 = 1 each -> mean over 4 pairs = 0.5
    hessian, commute = model.decoder.basis_penalties("commutator")
    assert hessian.item() == pytest.approx(0.5)
    assert commute.item() == pytest.approx(1.0)  # [B1, B2] = diag(1, -1): (2 + 2) / 4
    _, reference = model.decoder.basis_penalties("reference_transpose")
    assert reference.item() == pytest.approx(0.0)  # the products are symmetric
    # expm(t B1) = I + t B1 (B1 is nilpotent)
    group = model.decoder.group_element(torch.tensor([[0.7, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(group, torch.tensor([[1.0, 0.7, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("prob", [0.0, 1.0])
def test_clg_forward_eg_branch(prob: float) -> None:
    torch.manual_seed(0)
    model = make("clgvae", forward_eg_prob=prob, hy_commute=1.0)
    out = model.training_losses(torch.rand(6, 1, 32, 32), 0)
    assert out["forward_eg"].item() == prob
    expected = (out["reconstruction"] + out["kl"] + 0.1 * out["group_rec"]
                + 40.0 * out["hessian"] + out["commute"])
    torch.testing.assert_close(out["loss"], expected)


def test_clg_config_errors() -> None:
    with pytest.raises(ValueError, match="square"):
        make("clgvae", subgroup_sizes=[10])
    with pytest.raises(ValueError, match="add up"):
        make("clgvae", subspace_sizes=[4])
    with pytest.raises(ValueError, match="architecture='clg'"):
        make("clgvae", architecture="dlib")
