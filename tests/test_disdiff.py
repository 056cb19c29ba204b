"""DisDiff stage 3 (models/disdiff.py): the loss against a naive re-computation, the gradient
paths (the encoder is trained by L_dis too, w_b carries none), the frozen encoder copy, the EMA
scope, the protocol and the swap grids; all at 16 px on a pixel-space model (the stage-3 maths
does not depend on where the latents come from) in seconds."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from disentkit.errors import ConfigError, UserError
from disentkit.models.disdiff import DisDiff, DisDiffConfig, parse_factor_spec

N, D = 3, 4


def _model(seed: int = 0, **overrides) -> DisDiff:
    torch.manual_seed(seed)
    settings = dict(latent="pixel", unet="tiny_disdiff",
                    unet_overrides=dict(base_channels=16, norm_groups=8, num_heads=2),
                    num_steps=100, num_factors=N, factor_dim=D, encoder_channels=16, sample_steps=3,
                    dis_weight=0.5)
    settings.update(overrides)
    model = DisDiff(DisDiffConfig(**settings), (3, 16, 16))
    # the zero-initialised convolutions (the output and each residual branch's last) make every
    # G_i = 0, independent of the code, at the start; a trained decoder's fields are not
    with torch.no_grad():
        for p in model.shift.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.2)
    return model.train()


def _batch(seed: int = 1) -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _naive_terms(model: DisDiff, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L_rec and L_dis written out from the paper's formulas: one shift pass per factor, the
    reference's deepcopy of the encoder in eval mode, the schedule's float64 tables by hand."""
    gen = torch.Generator().manual_seed(seed)
    sched, shift, b = model.schedule, model.shift, x.shape[0]
    code = model.encoder(x)
    t = torch.randint(0, sched.num_steps, (b,), generator=gen)
    noise = torch.randn(x.shape, generator=gen)
    c = torch.randint(0, N, (b,), generator=gen)
    abar = sched.alpha_bars[t].float().view(-1, 1, 1, 1)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), sched.alpha_bars[:-1]])[t].float()
    alpha = (1 - sched.betas[t]).float()
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * noise
    h, skips, emb = model.unet.encode(x_t, t)
    pred = model.unet.decode(h, skips, emb)
    w = shift.factor_latents
    rows = torch.linalg.matrix_exp(w - w.T)[:N]
    fields = []
    for k in range(N):
        emb_k = emb + shift.factor_proj(rows[k])
        fields.append(shift.run(h, skips, emb_k, shift.code_embed(code[:, k * D:(k + 1) * D])))
    coef = (-alpha.sqrt() * (1 - abar_prev) / (1 - abar.flatten()).sqrt()).view(-1, 1, 1, 1)
    rec = (noise - (pred + coef * sum(fields))).abs().mean()
    g_c = torch.stack([fields[int(c[i])][i] for i in range(b)])
    x0_hat = ((x_t - (1 - abar).sqrt() * pred) / abar.sqrt()).detach()
    x0_new = (x_t - (1 - abar).sqrt() * (pred - (1 - abar).sqrt() * g_c)) / abar.sqrt()
    frozen = copy.deepcopy(model.encoder).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    z_hat = frozen(x0_hat).view(b, N, D)
    z_new = frozen(x0_new).view(b, N, D)
    z = code.detach().view(b, N, D)
    a = (z_hat - z).norm(dim=-1) - (z_new - z).norm(dim=-1)
    bb = (z_hat - z_new).norm(dim=-1)
    ce = -a.log_softmax(-1)[torch.arange(b), c] - bb.log_softmax(-1)[torch.arange(b), c]
    weight = ((x0_hat - x0_new.detach()) ** 2).flatten(1).mean(1)
    return rec, (weight * 0.5 * ce).mean()


@pytest.mark.parametrize("kind", ["Z", "IM"])
def test_loss_terms_equal_the_naive_per_factor_computation(kind):
    model = _model(dis_loss_type=kind)
    x = _batch()
    before = copy.deepcopy(model.encoder.state_dict())
    terms = model.loss_terms(x, torch.Generator().manual_seed(5))
    model.encoder.load_state_dict(before)  # the naive pass updates the BN statistics once more
    rec, dis = _naive_terms(model, x, 5)
    assert terms["dis"].item() > 1e-5  # the check below is not 0 == 0
    torch.testing.assert_close(terms["rec"], rec, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["dis"], dis, rtol=1e-4, atol=1e-7)
    out = model.training_losses(x, 0, torch.Generator().manual_seed(5))
    assert set(out) >= {"loss", "rec", "dis", "dis_w"}


def test_encoder_is_trained_by_dis_and_the_weight_has_no_gradient():
    model = _model()
    terms = model.loss_terms(_batch(), torch.Generator().manual_seed(2))
    assert not terms["weight"].requires_grad
    terms["dis"].backward()
    enc = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in enc) and sum(g.abs().sum() for g in enc) > 0
    assert model.shift.factor_latents.grad.abs().sum() > 0  # expm(W - W^T) is trained
    assert all(p.grad is None for p in model.unet.parameters())


def test_rec_alone_reaches_encoder_and_shift_but_not_unet():
    model = _model()
    model.loss_terms(_batch(), torch.Generator().manual_seed(2))["rec"].backward()
    assert sum(p.grad.abs().sum() for p in model.encoder.parameters()) > 0
    assert all(not p.requires_grad for p in model.unet.parameters()) or \
        all(p.grad is None for p in model.unet.parameters())


def test_frozen_encoder_copy_is_the_live_encoder_in_eval_mode_without_side_effects():
    model = _model()
    x = _batch()
    model.encoder(x)  # non-trivial running statistics
    with torch.no_grad():
        model.encoder.net[0].weight.add_(0.1)  # an optimiser step changed the weights
    stats = copy.deepcopy(model.encoder.state_dict())
    out = model._frozen_encode(x)
    torch.testing.assert_close(out, copy.deepcopy(model.encoder).eval()(x))
    assert model.encoder.training
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, stats[key]), key  # BN running statistics untouched
    x.requires_grad_(True)
    model._frozen_encode(x).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert x.grad.abs().sum() > 0  # the gradient reaches the decoded images (and G_c behind them)


def test_declared_scopes_protocol_and_groups():
    model = _model()
    assert model.ema_modules == ("shift",)  # LitEma over the decoder side only
    assert set(model.frozen_modules) == {"first_stage", "unet"}
    assert model.default_protocol == "disdiff"
    assert model.code_groups() == [list(range(k * D, (k + 1) * D)) for k in range(N)]
    assert model.latent_dim == N * D and model.encode(_batch()).shape == (4, N * D)


def test_batched_fields_are_deterministic_per_sample():
    """The N passes run as one batch; sample i's fields do not depend on the other samples."""
    model = _model().eval()
    x, t = _batch(), torch.tensor([3, 50, 99, 0])
    code = model.encode(x)
    _, g = model.fields(x, t, code)
    _, g1 = model.fields(x[1:2], t[1:2], code[1:2])
    torch.testing.assert_close(g[1:2], g1, rtol=1e-3, atol=1e-4)
    assert g.shape == (4, N, 3, 16, 16)


def test_swap_grids_shapes_and_partial_sampling():
    model = _model().eval()
    src = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    tgt = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    grids = model.swap_grids(src, tgt, spec="0,2", partial=False, steps=2,
                             generator=torch.Generator().manual_seed(0))
    assert sorted(grids) == ["swap_factor0", "swap_factor2", "x0_strip"]
    grid = grids["swap_factor0"]
    assert grid.shape == (4, 3, 3, 16, 16) and 0 <= grid.min() and grid.max() <= 1
    torch.testing.assert_close(grid[0, 1:], src)  # sources along the top
    torch.testing.assert_close(grid[1:, 0], tgt)  # targets down the left
    assert grids["x0_strip"].shape == (N + 1, 2, 3, 16, 16)
    partial = model.swap_grids(src, tgt, spec="0", partial=True, steps=2,
                               generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(partial["swap_factor0_partial"], grid)
    again = model.swap_grids(src, tgt, spec="0,2", partial=False, steps=2,
                             generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again["swap_factor0"], grid)


def test_factor_spec_errors_are_one_line_user_errors():
    assert parse_factor_spec(None, 3) == [0, 1, 2] and parse_factor_spec("2,0,2", 3) == [2, 0]
    for bad in ("3", "a", "1-2", "-1"):
        with pytest.raises(UserError, match="factor indices 0..2") as err:
            parse_factor_spec(bad, 3)
        assert "\n" not in str(err.value)


def test_config_errors():
    with pytest.raises(ConfigError, match="model.ldm"):
        DisDiffConfig(latent="ldm")
    with pytest.raises(ConfigError, match="image channels"):
        DisDiffConfig(latent="pixel", unet_overrides={"in_channels": 1})


def test_sampling_uses_the_code_and_is_seeded():
    model = _model().eval()
    z = torch.randn(2, N * D, generator=torch.Generator().manual_seed(0))
    a, b = model.decode(z), model.decode(z)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])  # shared x_T: the images differ by their codes only
    from disentkit.viz.samples import describe

    assert describe(model) == "ddim, 3 steps"  # the caption of `disentkit sample` and the report
    s = model.sample(2, generator=torch.Generator().manual_seed(1), steps=2)
    assert s.shape == (2, 3, 16, 16) and torch.isfinite(s).all()
    assert F.l1_loss(model.reconstruct(_batch()[:2]), model.decode(model.encode(_batch()[:2]))) < 1e-6


# ---- the latent pipeline and the presets ------------------------------------------------------
PAPER = ("shapes3d", "cars3d", "mpi3d_toy", "celeba")


def _preset(name: str) -> dict:
    from disentkit.config import load_preset

    return load_preset(name)


@pytest.mark.parametrize("name", [*PAPER, "smoke", "shapes3d_like"])
def test_preset_repeats_its_upstream_ldm_model_and_data(name: str) -> None:
    mine, upstream = _preset(f"disdiff/{name}"), _preset(_preset(f"disdiff/{name}")["init"]["preset"])
    expected = {k: v for k, v in upstream["model"].items() if k != "name"}
    assert mine["model"]["ldm"] == expected
    assert mine["data"] == upstream["data"]
    assert mine["init"]["use_ema"] is False  # the reference's inverted load_ema_ckpt: true


def test_paper_presets_have_the_reference_settings() -> None:
    for name in PAPER:
        model = _preset(f"disdiff/{name}")["model"]
        assert (model["num_factors"], model["factor_dim"], model["dis_loss_type"]) == (6, 32, "Z")
        assert model["dis_weight"] == (0.01 if name == "mpi3d_toy" else 0.05)
    assert _preset("disdiff/celeba")["eval"]["metrics"] == ["tad"]


def test_paper_preset_builds_the_reference_networks() -> None:
    from disentkit.builders import build_model
    from disentkit.config import load_config
    from disentkit.models.base import DataFacts

    with torch.device("meta"):
        model = build_model(load_config("disdiff/shapes3d"), DataFacts((3, 64, 64), 1))

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(model.encoder) == 1_516_480
    assert count(model.unet) + count(model.shift) == 52_161_158 and count(model.shift) == 22_738_691
    assert model.latent_shape == (3, 16, 16)


def test_ldm_grid_drops_the_off_schedule_time_when_steps_do_not_divide_T() -> None:
    from disentkit.diffusion.schedules import DiscreteSchedule
    from disentkit.diffusion.timesteps import ddim_grid

    grid = ddim_grid(DiscreteSchedule.scaled_linear(1000), 3, "ldm")
    assert grid.times.tolist() == [0, 1, 334, 667]
