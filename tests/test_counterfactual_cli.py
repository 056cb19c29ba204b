"""``disentkit counterfactual`` and ``disentkit manipulate`` on a tiny diti run folder (built in the
test from the diti/smoke preset, with a randomised shift decoder so that the code matters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disentkit import cli
from disentkit.builders import build_dataset, build_model
from disentkit.config import load_config, save_config
from disentkit.models.base import DataFacts
from disentkit.pixels import for_display, for_model
from disentkit.training.checkpoint import save_atomic
from disentkit.viz.counterfactual import (
    block_label,
    counterfactual_figure,
    manipulation_figure,
    reference_blocks,
)
from disentkit.viz.images import data_batch


def _make_run(root: Path, preset: str = "diti/smoke") -> Path:
    config = load_config(preset)
    data = build_dataset(config)
    facts = DataFacts.of(data)
    torch.manual_seed(0)
    model = build_model(config, facts)
    with torch.no_grad():  # the zero-initialised last conv would make G = 0 and the code irrelevant
        for name, param in model.named_parameters():
            if name.startswith("shift."):
                param.add_(torch.randn_like(param) * 0.05)
    run = root / preset.replace("/", "-")
    (run / "checkpoints").mkdir(parents=True)
    save_config(config, run / "config.yaml")
    save_atomic({"model": model.state_dict(), "data_facts": facts.to_dict()}, run / "checkpoints" / "last.pt")
    return run


@pytest.fixture(scope="module")
def diti_run(tmp_path_factory) -> Path:
    return _make_run(tmp_path_factory.mktemp("runs"))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_counterfactual_writes_the_labelled_grid_of_the_model(diti_run: Path, tmp_path: Path) -> None:
    from disentkit.run_loading import load_run

    loaded = load_run(diti_run)
    data = loaded.data()
    image_b = tmp_path / "b.png"  # image B as a file (grey PNG of dataset item 40), image A an index
    Image.fromarray(data.uint8_from_indices(np.array([40]))[0, :, :, 0]).save(image_b)
    out = tmp_path / "cf.png"
    code = cli.main(["counterfactual", str(diti_run), "--image", "3", "--image", str(image_b),
                     "--blocks", "0:1", "4:4", "--alphas", "0", "1", "--steps", "2", "--out", str(out)])
    assert code == 0 and out.is_file()
    x_a = data_batch(data, [3])
    x_b = data_batch(data, [40])
    model = loaded.model
    with torch.no_grad():  # the model works in its pixel range, [-1, 1]
        grid = for_display(model.counterfactual(for_model(x_a, model), for_model(x_b, model),
                                                [(0, 1), (4, 4)], [0.0, 1.0], 2, "both")[:, :, 0],
                           model)
    layout = loaded.model.block_layout()
    assert [block_label(layout, 0, 1), block_label(layout, 4, 4)] == [
        "block 0 / dims 0-4", "blocks 4-7 / dims 18-31"]
    labels = ["block 0 / dims 0-4 in A", "block 0 / dims 0-4 in B",
              "blocks 4-7 / dims 18-31 in A", "blocks 4-7 / dims 18-31 in B"]
    expected = np.asarray(counterfactual_figure(grid, x_a[0], x_b[0], labels, [0.0, 1.0]))
    written = _png(out)
    assert written.shape == expected.shape
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    # in A's context alpha 0 regenerates A whatever the segment, in B's alpha 1 regenerates B;
    # at the other end the segment matters
    assert torch.allclose(grid[0, 0], grid[2, 0]) and torch.allclose(grid[1, 1], grid[3, 1])
    assert not torch.allclose(grid[0, 1], grid[2, 1], atol=1e-3)
    assert not torch.allclose(grid[1, 0], grid[3, 0], atol=1e-3)


def test_counterfactual_user_errors_are_one_line(diti_run: Path, tmp_path: Path, capsys) -> None:
    cases = [
        (["--image", "0"], "exactly two --image"),
        (["--image", "0", "--image", "1", "--blocks", "6:4"], "do not fit this code of 8 blocks"),
        (["--image", "0", "--image", str(tmp_path / "none.png")], "no such image file"),
        (["--image", "0", "--image", "99999999"], "the run's dataset has"),
    ]
    for extra, message in cases:
        assert cli.main(["counterfactual", str(diti_run), *extra, "--steps", "1"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    ddpm = _make_run(tmp_path, "ddpm/smoke")
    assert cli.main(["counterfactual", str(ddpm), "--image", "0", "--image", "1"]) == 2
    assert "needs a pdae or diti run" in capsys.readouterr().err


def test_reference_blocks_scale_to_the_block_count() -> None:
    assert reference_blocks(64) == [(2, 4), (16, 8), (24, 8), (32, 32)]
    assert reference_blocks(8) == [(0, 1), (2, 1), (3, 1), (4, 4)]
    assert all(s + w <= 4 for s, w in reference_blocks(4))


def test_manipulate_writes_the_grid_and_the_learned_mask(diti_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "edit.png"
    code = cli.main(["manipulate", str(diti_run), "--attribute", "shape", "--keep", "3", "--epochs", "10",
                     "--batch-size", "16", "--train-images", "96", "--n", "2", "--steps", "2",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    mask = np.asarray(record["mask"])
    assert mask.shape == (32,) and set(np.unique(mask)) <= {0.0, 1.0}
    assert record["kept_dims"] == np.flatnonzero(mask).tolist()
    assert record["positive_class"] == "shape >= 1 (of 3 values)" and record["train_images"] == 96
    widths = [5, 5, 5, 3, 3, 3, 3, 5]  # diti/smoke's blocks: the JSON names those of the kept dims
    blocks = [b for b, w in enumerate(widths) for _ in range(w)]
    assert record["kept_blocks"] == sorted({blocks[d] for d in record["kept_dims"]})
    written = _png(out)
    blank = manipulation_figure(torch.zeros(2, 1, 32, 32), torch.zeros(3, 2, 1, 32, 32), [-0.3, 0.0, 0.3],
                                "shape: 3/32 dims")
    assert written.shape == np.asarray(blank).shape  # 2 rows; input + 3 scales
    assert cli.main(["manipulate", str(diti_run), "--attribute", "colour"]) == 2
    err = capsys.readouterr().err
    assert "no such factor" in err and "shape, scale, orientation, posX, posY" in err
