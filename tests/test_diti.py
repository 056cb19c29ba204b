"""diti (issue 12): the time-step partition with both reference quirks, the gradient masks of the
base / stop_grad / dual modes, the masked guided DDIM, and the diti/smoke chain through run folders
(its ddpm stage trained first), evaluated and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import disentkit
from disentkit.cli import main
from disentkit.config import ConfigError, load_config
from disentkit.models.diti import DiTi, DiTiConfig, block_ends, block_widths
from disentkit.training.checkpoint import load_checkpoint
from disentkit.viz.report import write_report

PAPER = [2, 2, 2, 4, 8, 8, 9] + [25] * 12 + [27] + [8] * 11 + [12] + [1] * 31 + [19]
TINY = dict(latent_dim=32, unet="tiny_pdae", num_steps=100, encoder="custom", encoder_channels=[16, 32],
            encoder_attention_after=1, encoder_norm_groups=8,
            unet_overrides={"base_channels": 16, "norm_groups": 8}, sample_steps=5,
            num_blocks=8, stages=[10, 30, 100], stage_dims=[5, 10, 17])


def test_paper_partition_has_the_reference_layout() -> None:
    widths = block_widths(block_ends(1000, 64, [50, 100, 300, 500, 1000], [10, 25, 327, 100, 50], 512))
    assert len(PAPER) == 64 and sum(PAPER) == 512
    assert widths == PAPER


def test_a_stage_without_blocks_gives_its_dims_to_the_next_stages_first_block() -> None:
    ends = block_ends(1000, 8, [50, 100, 300, 500, 1000], [2, 3, 15, 8, 4], 32)
    assert block_widths(ends) == [2, 10, 8, 8, 1, 1, 1, 1]


def test_without_stages_the_blocks_are_equal() -> None:
    assert block_widths(block_ends(1000, 64, [], [], 512)) == [8] * 64


@pytest.mark.parametrize("changes, match", [
    ({"stages": [10, 30, 90]}, "end at T"),
    ({"stage_dims": [5, 10, 16]}, "sum to 31"),
    ({"stages": [10, 100], "stage_dims": [5, 10, 17]}, "one size per stage"),
    ({"num_blocks": 2, "stages": [10, 99, 100]}, "never be used"),
    ({"stages": [], "stage_dims": [], "num_blocks": 5}, "does not divide"),
])
def test_bad_partitions_are_config_errors(changes: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DiTiConfig(**{**TINY, **changes})


def _model(mode: str = "base") -> DiTi:
    torch.manual_seed(0)
    model = DiTi(DiTiConfig(**{**TINY, "mode": mode, "flip": False}), (3, 16, 16))
    with torch.no_grad():  # zero-initialised convolutions would make G = 0 and the code irrelevant
        for p in model.shift.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


class _FixedCode(nn.Module):
    """An "encoder" returning one leaf code, to read the loss's gradient with respect to z."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.randn(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z.expand(x.shape[0], -1)


def _code_gradient(model: DiTi, seed: int) -> tuple[torch.Tensor, int]:
    """dL/dz of one image's loss, and the block idx(t) of the time step drawn for it."""
    model.encoder = _FixedCode(model.config.latent_dim)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    t = torch.randint(0, 100, (1,), generator=torch.Generator().manual_seed(seed))  # the loss's first draw
    model.training_losses(x, 0, torch.Generator().manual_seed(seed))["loss"].backward()
    return model.encoder.z.grad[0], int(model.block_of(t))


@pytest.mark.parametrize("seed", [0, 3])
def test_gradient_masks_of_the_modes(seed: int) -> None:
    ends = _model().config.ends()
    starts = [0, *ends[:-1]]
    grad, block = _code_gradient(_model("stop_grad"), seed)
    own = torch.zeros(32, dtype=torch.bool)
    own[starts[block]:ends[block]] = True
    assert torch.all(grad[~own] == 0) and torch.all(grad[own] != 0)
    for mode in ("base", "dual"):
        grad, block = _code_gradient(_model(mode), seed)
        assert torch.all(grad[ends[block]:] == 0) and torch.all(grad[:ends[block]] != 0)
    assert block < 7  # the seeds draw early time steps, so "beyond the end" is not empty


def test_dual_mode_sums_the_two_losses() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    terms = {m: _model(m).training_losses(x, 0, torch.Generator().manual_seed(4)) for m in DiTi.modes}
    assert torch.allclose(terms["base"]["loss"], terms["stop_grad"]["loss"])  # same value, other gradient
    assert torch.allclose(terms["dual"]["loss"], terms["base"]["loss"] + terms["stop_grad"]["loss"])


def test_masked_ddim_ignores_blocks_after_the_last_step_and_is_deterministic() -> None:
    model = _model().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    z = model.encode(x)
    x_T = model.invert(x, 5, z)
    assert torch.equal(x_T, model.invert(x, 5, z))
    out = model.decode(z, x_T, 5)
    assert torch.equal(out, model.decode(z, x_T, 5))
    # DiTi's grid range(0, 100, 20) evaluates t <= 80, block idx(80) = 6: block 7's dims are unused
    late, early = z.clone(), z.clone()
    late[:, model.block_layout()[7][0]:] += 3.0
    early[:, :5] += 3.0
    assert torch.equal(model.decode(late, x_T, 5), out)
    assert not torch.allclose(model.decode(early, x_T, 5), out, atol=1e-4)
    assert not torch.allclose(model.decode(late, x_T, 5, timestep_masks=False), out, atol=1e-4)
    mask = torch.ones(32, dtype=torch.bool)
    mask[:5] = False  # an explicit mask drops dims in every step
    assert torch.equal(model.decode(early, x_T, 5, mask=mask), model.decode(z, x_T, 5, mask=mask))


def test_layout_helpers_agree() -> None:
    model = _model()
    layout = model.block_layout()
    assert [w for _, w in layout] == [5, 5, 5, 3, 3, 3, 3, 5]
    assert model.dimension_blocks()[:6] == [0, 0, 0, 0, 0, 1]
    assert model.block_times()[0] == (0, 13) and model.block_times()[-1] == (88, 100)
    assert model.code_mask(1, 2).nonzero().flatten().tolist() == list(range(5, 15))


def test_diti_smoke_chain_trains_its_ddpm_stage_first_then_evaluates_and_reports(
        tmp_path: Path) -> None:
    quick = ["train.steps=2", "log.every=1", "init.overrides=[train.steps=2]"]
    run = disentkit.train(load_config("diti/smoke", [f"out_dir={tmp_path}", *quick]))
    upstream = tmp_path / "ddpm-smoke-seed0"
    assert json.loads((upstream / "summary.json").read_text())["status"] == "finished"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["upstream"]["run"] == str(upstream.resolve())
    up = load_checkpoint(upstream / "checkpoints" / "last.pt")
    mine = load_checkpoint(run / "checkpoints" / "last.pt")
    up_ema = up["ema"][""]  # the ddpm averages its whole model
    for key, value in mine["model"].items():
        if key.startswith("base."):  # the EMA weights of the upstream, unchanged by training
            assert torch.equal(value, up_ema["module.unet." + key[len("base."):]]), key
    assert sorted(mine["ema"]) == ["encoder", "shift"]
    assert main(["eval", str(run)]) == 0  # the preset scores MIG with the fast sample sizes
    # small report budgets: a few traversal rows and values, a small MI estimate
    page = write_report(run, steps=3, max_latents=3, num_fixed=1, mi_points=300).read_text()
    assert "Code layout and counterfactuals" in page and "[88, 100)" in page
    assert (run / "report_files" / "counterfactual.png").is_file()
    assert "counterfactual: not available" not in page and "traversals: not available" not in page
