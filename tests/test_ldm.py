"""DisDiff's stage 2 (``ldm``): the L1 eps loss on the frozen, unquantised first-stage latents,
``scale_by_std`` fitted once from the first batch and kept in the checkpoint, sampling decoded
through the quantiser, and the ``vqgan/smoke -> ldm/smoke`` chain through run folders (stage-1
weights bit-identical after stage-2 steps, resume keeps the scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import disentkit
from disentkit.config import from_dict, load_config, load_config_file, preset_names
from disentkit.models.base import NoRepresentationError
from disentkit.models.ldm import LDM, LDMConfig
from disentkit.training.checkpoint import load_checkpoint
from disentkit.training.stages import UpstreamError

FIRST_STAGE = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 3, "embed_dim": 3,
               "n_embed": 16, "norm_groups": 4}
UNET = {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_ds": [2],
        "num_heads": 2, "norm_groups": 8}


def _ldm(**changes) -> LDM:
    torch.manual_seed(0)
    params = {"first_stage": dict(FIRST_STAGE), "unet": "tiny_disdiff", "unet_overrides": UNET,
              "num_steps": 100, "sample_steps": 2, **changes}
    return LDM(from_dict(LDMConfig, params, "model"), (3, 16, 16))


def _batch(seed: int, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_loss_is_the_l1_eps_loss_on_the_scaled_unquantised_latents() -> None:
    model = _ldm()
    x = _batch(1)
    losses = model.training_losses(x, step=0, generator=torch.Generator().manual_seed(7))
    z = model.first_stage.quant_conv(model.first_stage.encoder(x))  # no quantisation
    z = z * (1.0 / z.flatten().std())
    gen = torch.Generator().manual_seed(7)
    t = torch.randint(0, 100, (4,), generator=gen)
    eps = torch.randn(z.shape, generator=gen)
    pred = model.unet(model.schedule.q_sample(z, t, eps), t)
    assert losses["loss"].item() == pytest.approx((pred - eps).abs().mean().item(), rel=1e-5)
    l2 = _ldm(loss="l2").training_losses(x, 0, generator=torch.Generator().manual_seed(7))
    assert l2["loss"].item() == pytest.approx(((pred - eps) ** 2).mean().item(), rel=1e-5)


def test_scale_by_std_is_fitted_once_from_the_first_batch_and_kept_in_the_state() -> None:
    model = _ldm()
    assert model.scale_factor.item() == 1.0 and not bool(model.scale_fitted)
    first = _batch(1)
    model.training_losses(first, step=0)
    with torch.no_grad():
        expected = 1.0 / model.first_stage.encode_latent(first).flatten().std()
    assert model.scale_factor.item() == pytest.approx(expected.item(), rel=1e-6)
    model.training_losses(_batch(2) * 0.1, step=1)  # a differently spread batch changes nothing
    assert model.scale_factor.item() == pytest.approx(expected.item(), rel=1e-6)
    # a buffer: in the state dict, so a restored model uses it and does not fit again
    state = model.state_dict()
    assert "scale_factor" in state and bool(state["scale_fitted"])
    restored = _ldm()
    restored.load_state_dict(state)
    restored.training_losses(_batch(3) * 5.0, step=0)
    assert restored.scale_factor.item() == pytest.approx(expected.item(), rel=1e-6)
    fixed = _ldm(scale_by_std=False, scale_factor=0.5)
    fixed.training_losses(first, step=0)
    assert fixed.scale_factor.item() == 0.5


def test_latents_round_trip_and_samples_decode_through_the_quantiser() -> None:
    model = _ldm()
    model.training_losses(_batch(1), step=0)
    x01 = (_batch(4) + 1) / 2
    z = model.to_latent(x01)
    assert z.shape == (4, 3, 8, 8)
    torch.testing.assert_close(model.from_latent(z), (model.reconstruct(x01 * 2 - 1) + 1) / 2)
    model.eval()
    a = model.sample(2, generator=torch.Generator().manual_seed(0), steps=2)
    b = model.sample(2, generator=torch.Generator().manual_seed(0), steps=2)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
    latents = model.sample_latents(2, generator=torch.Generator().manual_seed(0), steps=2)
    fs = model.first_stage
    quantised = fs.decode_latent(fs.quantize(latents / model.scale_factor).z_q, quantize=False)
    torch.testing.assert_close(a, quantised)
    with pytest.raises(NoRepresentationError):
        model.encode(x01)


def test_kl_first_stage_trains_on_posterior_draws() -> None:
    model = _ldm(first_stage={**FIRST_STAGE, "quantize": False})
    x = _batch(1)
    torch.manual_seed(0)
    a = model.first_stage_latent(x)
    b = model.first_stage_latent(x)
    assert not torch.equal(a, b)  # draws, not the mean
    losses = [model.training_losses(x, 0, generator=torch.Generator().manual_seed(4))["loss"]
              for _ in range(2)]
    assert torch.isfinite(losses[0]) and torch.equal(losses[0], losses[1])  # the draw is the generator's


# ---- the chain through run folders ---------------------------------------------------------------
def _images(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = np.zeros((16, 16, 3), np.uint8)
        image[...] = rng.integers(0, 256, 3)
        image[4:12, 4:12] = rng.integers(0, 256, 3)
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


def _data(folder: Path) -> list[str]:
    return ["data.name=image_folder", f"data.path={folder}", "data.image_size=16"]


def test_vqgan_smoke_then_ldm_smoke_through_run_folders(tmp_path: Path) -> None:
    data = _data(_images(tmp_path / "images"))
    upstream = "[" + ",".join([*data, "train.steps=2"]) + "]"
    config = load_config("ldm/smoke", [f"out_dir={tmp_path / 'runs'}", "train.steps=2",
                                       "train.checkpoint_every=1", *data, f"init.overrides={upstream}"])
    run = disentkit.train(config)
    stage1 = tmp_path / "runs" / "vqgan-smoke-seed0"
    vq = load_checkpoint(stage1 / "checkpoints" / "last.pt")
    ldm = load_checkpoint(run / "checkpoints" / "last.pt")
    assert vq["step"] == 2 and ldm["step"] == 2
    loaded = {k[len("first_stage."):]: v for k, v in ldm["model"].items() if k.startswith("first_stage.")}
    original = {k[len("autoencoder."):]: v for k, v in vq["model"].items() if k.startswith("autoencoder.")}
    assert loaded.keys() == original.keys()
    for key, value in original.items():  # frozen through the stage-2 steps: bit-identical
        assert torch.equal(loaded[key], value), key
    scale = ldm["model"]["scale_factor"].item()
    assert bool(ldm["model"]["scale_fitted"]) and scale != 1.0
    assert list(ldm["ema"]) == ["unet"]
    # resume: the scale comes back from the checkpoint, it is not fitted again
    resumed = load_config_file(run / "config.yaml", ["train.steps=3"])
    disentkit.train(resumed, run, resume=True)
    after = load_checkpoint(run / "checkpoints" / "last.pt")
    assert after["step"] == 3 and after["model"]["scale_factor"].item() == scale
    # a downstream stage loads the model's own buffers by name (DisDiff takes scale_factor)
    modules = "[first_stage,unet,scale_factor,scale_fitted]"
    child = load_config("ldm/smoke", [f"out_dir={tmp_path / 'runs'}", "name=child", "train.steps=1",
                                      *data, f"init.run={run}", f"init.modules={modules}"])
    child_state = load_checkpoint(disentkit.train(child) / "checkpoints" / "last.pt")
    assert child_state["model"]["scale_factor"].item() == scale


def test_ldm_first_stage_that_does_not_match_the_upstream_is_refused(tmp_path: Path) -> None:
    data = _data(_images(tmp_path / "images"))
    upstream = "[" + ",".join([*data, "train.steps=1"]) + "]"
    config = load_config("ldm/smoke", [f"out_dir={tmp_path / 'runs'}", "train.steps=1", *data,
                                       "model.first_stage.ch=8", "model.first_stage.norm_groups=4",
                                       f"init.overrides={upstream}"])
    with pytest.raises(UpstreamError, match="do not fit this model's shapes") as err:
        disentkit.train(config)
    assert "\n" not in str(err.value)


# ---- presets --------------------------------------------------------------------------------------
LDM_PRESETS = [n for n in preset_names() if n.startswith("ldm/")]


@pytest.mark.parametrize("preset", LDM_PRESETS)
def test_ldm_preset_repeats_its_upstream_autoencoder_and_data(preset: str) -> None:
    """The first stage is built from the LDM's own config before init loads the weights, so each
    preset's first_stage must be its upstream preset's autoencoder, on the same data."""
    config = load_config(preset)
    upstream = load_config(config.init.preset)
    assert upstream.model.name in ("vqgan", "klvae")
    assert config.model.first_stage == upstream.model.autoencoder
    assert config.data.to_dict() == upstream.data.to_dict()
    assert config.init.modules == ["first_stage=autoencoder"]


def test_paper_ldm_presets_build_the_reference_unet() -> None:
    from disentkit.builders import build_model
    from disentkit.models.base import DataFacts

    for name in ("shapes3d", "cars3d", "mpi3d_toy", "celeba"):
        config = load_config(f"ldm/{name}")
        with torch.device("meta"):
            model = build_model(config, DataFacts((3, 64, 64)))
        assert sum(p.numel() for p in model.unet.parameters()) == 29_422_467, name
        assert model.latent_shape == (3, 16, 16)
        assert (config.optim.name, config.optim.weight_decay, config.lr_schedule.warmup_steps) == \
            ("adamw", 0.01, 10_000)
        assert config.train.ema_warmup and config.train.ema_decay == 0.9999
