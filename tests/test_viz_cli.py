"""`disentkit traverse` / `disentkit report` on a tiny trained run; true-factor traversals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disentkit.cli import main
from disentkit.data.base import ArrayGroundTruthData
from disentkit.viz.factors import factor_response, factor_sweep_factors


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    import disentkit
    from disentkit.config import load_config

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    config = load_config("betavae/smoke", ["train.steps=3", "model.latent_dim=3", f"out_dir={out}",
                                           "name=cli"])
    return disentkit.train(config)


def test_traverse_command_writes_every_mode(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t"
    code = main(["traverse", str(run_dir), "--mode", "all", "--order", "factor", "--steps", "4",
                 "--num-prior", "2", "--mi-points", "500", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "rows (factor)" in printed
    for name in ("traverse_fixed_0.png", "traverse_fixed_2.png", "traverse_random.gif",
                 "traverse_zero_0.png", "traverse_prior_1.png", "traverse_prior.gif",
                 "reconstructions.png", "factor_traversals.png", "factor_response.png"):
        assert (out / name).is_file(), name
    with Image.open(out / "traverse_zero.gif") as gif:
        assert gif.n_frames == 6
    with Image.open(out / "traverse_zero_0.png") as png:
        # 3 latent rows and 4 value columns of 32 px tiles upscaled to 64 px, plus labels
        assert png.width > 4 * 66 + 2 and png.height > 3 * 66 + 2


def test_traverse_quantiles_single_mode(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    assert main(["traverse", str(run_dir), "--mode", "zero", "--values", "quantile", "--steps", "3",
                 "--no-gif", "--no-factors", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["reconstructions.png", "traverse_zero_0.png"]


def test_report_command(run_dir: Path) -> None:
    assert main(["report", str(run_dir), "--steps", "3"]) == 0
    assert (run_dir / "report.html").stat().st_size > 1000


def test_factor_sweep_factors_and_response() -> None:
    base = np.array([[1, 2], [0, 0]])
    f = factor_sweep_factors(base, factor=1, size=3)
    assert f.tolist() == [[1, 0], [1, 1], [1, 2], [0, 0], [0, 1], [0, 2]]

    images = np.zeros((2 * 3, 4, 4, 1), np.uint8)
    for i in range(6):
        images[i, 0, 0, 0] = 100 * (i % 3)  # pixel (0,0) = factor b

    class Reader(torch.nn.Module):
        def encode(self, x):
            return torch.stack([x[:, 0, 0, 0], torch.zeros(len(x))], dim=1)

    data = ArrayGroundTruthData(images, ["a", "b"], [2, 3])
    response = factor_response(Reader(), data, num_bases=4, seed=0)
    np.testing.assert_allclose(response.mean[1][:, 0], [0, 100 / 255, 200 / 255], atol=1e-6)
    np.testing.assert_allclose(response.std[1][:, 0], 0, atol=1e-6)
    np.testing.assert_allclose(response.mean[0][:, 1], 0)
    assert response.mean[0].shape == (2, 2)
