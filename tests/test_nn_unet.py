"""Behaviour of the ADM UNet, the shift decoder and the diffusion encoders on tiny CPU configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from disentkit.config import ConfigError
from disentkit.errors import UserError
from disentkit.nn.diffusion_encoders import DisDiffEncoder, PDAEEncoder
from disentkit.nn.shift_decoder import ShiftConfig, ShiftDecoder, ShiftUNet
from disentkit.nn.unet import (
    AttentionBlock,
    GroupNorm32,
    ResBlock,
    UNet,
    UNetConfig,
    count_parameters,
    timestep_embedding,
)

B, S = 2, 16


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Replace every parameter (zero-initialised ones included) by seeded noise, so outputs and
    internal paths are not trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def inputs(channels: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, channels, S, S, generator=g), torch.tensor([3.0, 750.0])


# ------------------------------------------------------------------------------------- UNet
@pytest.mark.parametrize("preset", ["tiny_pdae", "tiny_disdiff", "tiny_fdae"])
def test_tiny_forward_shapes_and_split_is_exact(preset):
    cfg = UNetConfig.preset(preset, out_channels=5)
    net = randomize(UNet(cfg)).eval()
    x, t = inputs()
    cond = torch.randn(B, cfg.stem_channels, S, S) if cfg.stem_channels else None
    out = net(x, t, cond)
    assert out.shape == (B, 5, S, S)
    h, skips, emb = net.encode(x, t, cond)
    assert skips[-1] is h and emb.shape == (B, cfg.time_embed_dim)
    assert [s.shape[1] for s in skips] == cfg.skip_channels()
    n_skips = len(skips)
    first = net.decode(h, skips, emb)
    again = net.decode(h, skips, emb)          # decode must not consume the skips
    assert len(skips) == n_skips
    assert torch.equal(first, out) and torch.equal(again, out)


def test_split_stem_adds_the_condition_map_before_the_second_conv():
    cfg = UNetConfig.preset("tiny_fdae")
    net = randomize(UNet(cfg)).eval()
    x, t = inputs()
    cond = torch.randn(B, cfg.stem_channels, S, S)
    seen = []
    hook = net.input_blocks[0][0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with_map = net(x, t, cond)
    without = net(x, t)
    hook.remove()
    assert torch.allclose(seen[0], net.stem_in(x) + cond, atol=0, rtol=0)
    assert torch.equal(seen[1], net.stem_in(x))
    assert not torch.allclose(with_map, without)
    # the first stem conv is not a skip: the first skip is the base-width second conv's output
    _, skips, _ = net.encode(x, t, cond)
    assert skips[0].shape[1] == cfg.base_channels and len(skips) == len(cfg.skip_channels())
    with pytest.raises(ValueError, match="split stem"):
        UNet(UNetConfig.preset("tiny_pdae"))(x, t, cond)


def _expected_resblock(block: ResBlock, x, emb):
    """ADM ResBlock written out from the paper's definition."""
    first = block.in_norm
    h = block.in_conv(F.silu(F.group_norm(x, first.num_groups, first.weight, first.bias)))
    e = block.emb_layers(emb)[:, :, None, None]
    norm = block.out_norm
    if block.scale_shift:
        scale, shift = e.chunk(2, dim=1)
        h = F.group_norm(h, norm.num_groups, norm.weight, norm.bias) * (1 + scale) + shift
    else:
        h = F.group_norm(h + e, norm.num_groups, norm.weight, norm.bias)
    return block.skip(x) + block.out_rest[2](F.silu(h))


def test_adagn_and_added_time_embedding_follow_their_formulas_and_differ():
    x = torch.randn(B, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    emb = torch.randn(B, 64, generator=torch.Generator().manual_seed(4))
    ada = randomize(ResBlock(16, 32, 64, groups=8, scale_shift=True), seed=5).eval()
    add = randomize(ResBlock(16, 32, 64, groups=8, scale_shift=False), seed=5).eval()
    assert ada.emb_layers[1].out_features == 64 and add.emb_layers[1].out_features == 32
    torch.testing.assert_close(ada(x, emb), _expected_resblock(ada, x, emb))
    torch.testing.assert_close(add(x, emb), _expected_resblock(add, x, emb))
    # the same UNet body with the two conditionings: one Linear(E -> C) extra per block for AdaGN
    net_add = randomize(UNet(UNetConfig.preset("tiny_pdae", scale_shift=False))).eval()
    net_ada = randomize(UNet(UNetConfig.preset("tiny_pdae", scale_shift=True))).eval()
    widths = [m.out_norm.num_channels for m in net_ada.modules() if isinstance(m, ResBlock)]
    emb_dim = net_ada.config.time_embed_dim
    assert widths and count_parameters(net_ada) - count_parameters(net_add) == sum(w * (emb_dim + 1)
                                                                                  for w in widths)
    assert not torch.allclose(net_ada(*inputs()), net_add(*inputs()))


def test_resblock_resampling_halves_and_doubles():
    x, emb = torch.randn(B, 16, 8, 8), torch.randn(B, 64)
    assert ResBlock(16, 16, 64, groups=8, resample="down")(x, emb).shape == (B, 16, 4, 4)
    assert ResBlock(16, 16, 64, groups=8, resample="up")(x, emb).shape == (B, 16, 16, 16)
    cfg = UNetConfig.preset("tiny_pdae", resblock_updown=False)
    assert UNet(cfg)(*inputs()).shape == (B, 3, S, S)


def _naive_attention(block: AttentionBlock, x, legacy: bool):
    """ADM's einsum attention (scale 1/sqrt(sqrt(d)) on q and k), both head orders."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    qkv = block.qkv(block.norm(flat))
    heads, length = block.num_heads, flat.shape[-1]
    d = c // heads
    if legacy:
        q, k, v = qkv.reshape(b * heads, 3 * d, length).split(d, dim=1)
    else:
        q, k, v = (u.reshape(b * heads, d, length) for u in qkv.chunk(3, dim=1))
    s = 1 / math.sqrt(math.sqrt(d))
    w = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, length)
    return (flat + block.proj_out(a)).reshape(x.shape)


def test_attention_head_orders_match_adm_and_differ_from_each_other():
    x = torch.randn(B, 32, 4, 4, generator=torch.Generator().manual_seed(6))
    legacy = randomize(AttentionBlock(32, 4, groups=8, legacy_order=True), seed=7)
    new = AttentionBlock(32, 4, groups=8, legacy_order=False)
    new.load_state_dict(legacy.state_dict())
    torch.testing.assert_close(legacy(x), _naive_attention(legacy, x, legacy=True))
    torch.testing.assert_close(new(x), _naive_attention(new, x, legacy=False))
    assert not torch.allclose(legacy(x), new(x), atol=1e-4)
    # the whole network: same parameters, same count, different outputs
    net_legacy = randomize(UNet(UNetConfig.preset("tiny_disdiff", legacy_attention=True))).eval()
    net_new = UNet(UNetConfig.preset("tiny_disdiff", legacy_attention=False)).eval()
    net_new.load_state_dict(net_legacy.state_dict())
    assert count_parameters(net_legacy) == count_parameters(net_new)
    assert not torch.allclose(net_legacy(*inputs()), net_new(*inputs()), atol=1e-4)


def test_heads_from_head_channels():
    cfg = UNetConfig.preset("tiny_fdae")          # 32 channels per head
    heads = [m.num_heads for m in UNet(cfg).modules() if isinstance(m, AttentionBlock)]
    assert set(heads) == {2}                     # attention only at the 64-channel level


def test_groupnorm_groups_are_configurable():
    cfg = UNetConfig.preset("tiny_pdae", base_channels=16, norm_groups=4)
    net = UNet(cfg)
    groups = {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {4}
    assert net(*inputs()).shape == (B, 3, S, S)
    with pytest.raises(ConfigError, match="norm_groups=32 does not divide the 16 channels") as err:
        UNetConfig.preset("tiny_pdae", base_channels=16, norm_groups=32)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_groupnorm32_computes_in_float32():
    x = torch.randn(2, 8, 4, 4)
    gn = GroupNorm32(4, 8)
    out = gn(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, F.group_norm(x.to(torch.bfloat16).float(), 4).to(torch.bfloat16))


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 2.5])
    emb = timestep_embedding(t, 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(2.5 * freqs), torch.sin(2.5 * freqs)]))
    assert timestep_embedding(t, 7).shape == (2, 7) and torch.all(timestep_embedding(t, 7)[:, -1] == 0)


def test_scalar_time_is_broadcast():
    net = randomize(UNet(UNetConfig.preset("tiny_pdae"))).eval()
    x, _ = inputs()
    torch.testing.assert_close(net(x, 10), net(x, torch.tensor([10, 10])))


@pytest.mark.parametrize("overrides, pattern", [
    (dict(attention_ds=(4,)), "does not occur in a 2-level UNet"),
    (dict(num_heads=3), "num_heads=3 does not divide"),
    (dict(head_channels=24), "head_channels=24 does not divide"),
    (dict(dropout=1.5), "dropout must lie in"),
    (dict(channel_mult=()), "at least one level"),
    (dict(num_res_blocks=0), "num_res_blocks must be an integer >= 1"),
    (dict(channel_mult=5), "must be a list of integers"),
    (dict(scale_shift="yes"), "scale_shift must be true or false"),
])
def test_bad_settings_are_one_line_config_errors(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        UNetConfig.preset("tiny_pdae", **overrides)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_image_size_and_channels_are_checked():
    net = UNet(UNetConfig.preset("tiny_pdae"))
    with pytest.raises(ConfigError, match="divisible by 2, got 15x16"):
        net(torch.randn(1, 3, 15, 16), 0)
    with pytest.raises(ConfigError, match=r"shape \(B, 3, H, W\)"):
        net(torch.randn(1, 1, 16, 16), 0)


def test_config_round_trip_and_unknown_keys():
    cfg = UNetConfig.preset("fdae")
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    assert UNetConfig.from_dict({"channel_mult": [1, 2], "attention_ds": [2]}).channel_mult == (1, 2)
    with pytest.raises(ConfigError, match="unknown unet setting"):
        UNetConfig.from_dict({"chanel_mult": [1]})
    with pytest.raises(ConfigError, match="unknown unet preset"):
        UNetConfig.preset("nope")


# ----------------------------------------------------------------------------- shift decoder
def test_shift_decoder_output_is_zero_at_init_through_its_zero_conv():
    model = ShiftUNet(UNetConfig.preset("tiny_pdae"), ShiftConfig(code_dim=8))
    x, t = inputs()
    z = torch.randn(B, 8)
    zero_conv = model.shift.out[-1]
    assert torch.count_nonzero(zero_conv.weight) == 0 and torch.count_nonzero(zero_conv.bias) == 0
    # everything else random: G is still exactly zero because of the output conv alone
    for name, p in model.named_parameters():
        if not name.startswith("shift.out.2."):
            with torch.no_grad():
                p.copy_(torch.randn(p.shape) * 0.2)
    eps, g = model(x, t, z)
    assert g.shape == (B, 3, S, S) and torch.count_nonzero(g) == 0
    assert torch.count_nonzero(eps) > 0
    randomize(zero_conv)
    assert torch.count_nonzero(model(x, t, z)[1]) > 0


def test_shift_decoder_reads_the_code():
    model = randomize(ShiftUNet(UNetConfig.preset("tiny_pdae"), ShiftConfig(code_dim=8))).eval()
    x, t = inputs()
    eps1, g1 = model(x, t, torch.zeros(B, 8))
    eps2, g2 = model(x, t, torch.ones(B, 8))
    assert torch.equal(eps1, eps2) and not torch.allclose(g1, g2)


@pytest.mark.parametrize("preset", ["tiny_disdiff", "tiny_fdae"])
def test_per_factor_time_offsets_change_each_factor(preset):
    n, d = 3, 4
    cfg = UNetConfig.preset(preset)
    model = randomize(ShiftUNet(cfg, ShiftConfig(n * d, n, "orthogonal"))).eval()
    x, t = inputs()
    cond = torch.randn(B, cfg.stem_channels, S, S) if cfg.stem_channels else None
    same = torch.randn(B, d).repeat(1, n)                  # every factor gets the same code chunk
    eps, fields = model.fields(x, t, same, cond)
    assert fields.shape == (B, n, 3, S, S)
    for i in range(n):
        for j in range(i):
            assert not torch.allclose(fields[:, i], fields[:, j], atol=1e-4)
    # each batched factor pass equals a single pass with that factor's offset and code chunk
    h, skips, emb = model.base.encode(x, t, cond)
    offsets = model.shift.factor_offsets()
    for i in range(n):
        cond_i = model.shift.code_embed(same[:, i * d:(i + 1) * d])
        single = model.shift.run(h, skips, emb + offsets[i], cond_i)
        torch.testing.assert_close(fields[:, i], single, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model(x, t, same, cond)[1], fields.sum(dim=1))
    # P = expm(W - W^T) is orthogonal
    w = model.shift.factor_latents
    p = torch.linalg.matrix_exp(w - w.T)
    torch.testing.assert_close(p @ p.T, torch.eye(p.shape[0]), atol=1e-4, rtol=0)


def test_without_factor_embedding_identical_chunks_give_identical_fields():
    model = randomize(ShiftUNet(UNetConfig.preset("tiny_disdiff"), ShiftConfig(12, 3, "none"))).eval()
    x, t = inputs()
    _, fields = model.fields(x, t, torch.randn(B, 4).repeat(1, 3))
    torch.testing.assert_close(fields[:, 0], fields[:, 1])
    torch.testing.assert_close(fields[:, 0], fields[:, 2])
    table = randomize(ShiftUNet(UNetConfig.preset("tiny_disdiff"), ShiftConfig(12, 3, "table"))).eval()
    assert table.shift.factor_latents.shape == (3, 4)
    _, fields = table.fields(x, t, torch.randn(B, 4).repeat(1, 3))
    assert not torch.allclose(fields[:, 0], fields[:, 1], atol=1e-4)


def test_base_is_frozen_and_stays_in_eval_mode():
    model = randomize(ShiftUNet(UNetConfig.preset("tiny_pdae", dropout=0.5), ShiftConfig(code_dim=8)))
    model.train()
    assert not model.base.training and model.shift.training
    x, t = inputs()
    eps, g = model(x, t, torch.randn(B, 8))
    torch.testing.assert_close(eps, model.base(x, t))     # dropout off in the frozen base
    assert not eps.requires_grad
    g.square().sum().backward()
    assert all(p.grad is None for p in model.base.parameters())
    assert all(p.grad is not None for p in model.shift.parameters())


def test_shift_settings_are_checked():
    with pytest.raises(ConfigError, match="equal chunks"):
        ShiftConfig(code_dim=10, num_factors=3)
    with pytest.raises(ConfigError, match="unknown shift decoder factor_embedding"):
        ShiftConfig(code_dim=6, num_factors=3, factor_embedding="orth")
    with pytest.raises(ConfigError, match="has 64 rows"):
        ShiftDecoder(UNetConfig.preset("tiny_pdae"), ShiftConfig(code_dim=65, num_factors=65,
                                                                  factor_embedding="orthogonal"))
    assert ShiftConfig.from_dict(ShiftConfig(6, 3, "table").to_dict()) == ShiftConfig(6, 3, "table")


# ---------------------------------------------------------------------------------- encoders
def test_encoders_on_tiny_images():
    x = torch.randn(B, 3, 32, 32)
    pdae = PDAEEncoder(32, 32, (32, 64, 64), attention_after=1, norm_groups=8)
    assert pdae(x).shape == (B, 32)
    assert sum(isinstance(m, AttentionBlock) for m in pdae.modules()) == 1
    assert DisDiffEncoder(32, 24, channels=64)(x).shape == (B, 24)
    assert DisDiffEncoder(16, 24, channels=32)(x[..., :16, :16]).shape == (B, 24)
    with pytest.raises(ConfigError, match="divisible by 16, got 24"):
        DisDiffEncoder(24)
    with pytest.raises(ConfigError, match="divisible by 8, got 20"):
        PDAEEncoder(20, 8, (32, 64, 64), norm_groups=8)


def test_half_precision_model_runs_end_to_end():
    """A model cast to bfloat16 (time embedding, GroupNorm, matrix_exp and SDPA included)."""
    model = ShiftUNet(UNetConfig.preset("tiny_disdiff"), ShiftConfig(12, 3, "orthogonal")).to(torch.bfloat16)
    x, t = inputs()
    eps, g = model(x.to(torch.bfloat16), t, torch.randn(B, 12, dtype=torch.bfloat16))
    assert eps.dtype == g.dtype == torch.bfloat16 and g.shape == (B, 3, S, S)
