"""``disentkit masks RUN`` and FDAE's ``disentkit swap RUN --swap ...`` on a one-step 32-px
fdae/smoke run: the PNGs are exactly the in-process pictures (images in the model's [-1, 1]
range), and what cannot work is one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disentkit.cli import main

SMALL = ["train.steps=1", "train.batch_size=2"]  # 32 px: the smallest shapes3d_like size


@pytest.fixture(scope="module")
def fdae_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fdae")
    assert main(["train", "preset=fdae/smoke", f"out_dir={out}", "name=run", *SMALL]) == 0
    return out / "run"


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_masks_png_is_the_models_masks_of_the_chosen_images(fdae_run: Path, capsys) -> None:
    from disentkit.run_loading import load_run
    from disentkit.viz.fdae_views import image_masks, mask_strip_image
    from disentkit.viz.images import data_batch

    assert main(["masks", str(fdae_run), "--indices", "3,10,40"]) == 0
    assert "(3 images x 2 masks)" in capsys.readouterr().out
    run = load_run(fdae_run)
    run.model.eval()
    images = data_batch(run.data(), [3, 10, 40])
    masks = image_masks(run.model, images)
    with torch.no_grad():  # the model sees [-1, 1] images
        _, codes = run.model.content_and_mask_codes(images * 2 - 1)
        direct = run.model.masks_from_codes(codes)
    torch.testing.assert_close(masks, direct)
    torch.testing.assert_close(masks.sum(1), torch.ones(3, 32, 32))
    expected = mask_strip_image(images, masks, ["#3", "#10", "#40"], "2 masks (white = 1)")
    np.testing.assert_array_equal(_pixels(fdae_run / "masks.png"), expected)


def test_masks_refuses_what_cannot_work(fdae_run: Path, capsys) -> None:
    from disentkit.viz.fdae_views import NoMasksError, image_masks

    assert main(["masks", str(fdae_run), "--indices", "2,64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "disentkit masks: error: image indices must lie in 0..63 for this dataset, got 2, 64"
    with pytest.raises(NoMasksError, match="^model 'Linear' has no concept masks; disentkit masks needs "
                                           "a mask-based run such as fdae$"):
        image_masks(torch.nn.Linear(1, 1), torch.zeros(1, 3, 4, 4))


def test_swap_spec_grids_and_errors(fdae_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "swaps"
    args = ["swap", str(fdae_run), "--sources", "2", "--targets", "3", "--steps", "2", "--out", str(out)]
    assert main([*args, "--swap", "c2-m1"]) == 0
    assert "swap_c2-m1" in capsys.readouterr().out
    picture = _pixels(out / "swap_c2-m1.png")
    # 32-px tiles shown at 64 px: 3 + 1 rows and 2 + 1 columns of 66 px, plus the labels
    assert picture.shape[0] > 4 * 66 and picture.shape[1] > 3 * 66
    assert main([*args, "--swap", "c1,1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit swap: error: swap spec 'c1,1': a concept is listed twice")
    assert len(err.strip().splitlines()) == 1


def test_pca_traversals_move_one_content_code(fdae_run: Path, tmp_path: Path) -> None:
    from disentkit.run_loading import load_run
    from disentkit.viz.fdae_views import write_pca_traversals

    run = load_run(fdae_run)
    decoded = []
    original = run.model.decode

    def recording(codes, **kwargs):
        decoded.append(codes.clone())
        return original(codes, **kwargs)

    run.model.decode = recording
    paths = write_pca_traversals(run.model, run.data(), tmp_path, num_seeds=2, steps=3, fit_points=16,
                                 sampler_steps=2)
    assert [p.name for p in paths] == ["pca_content1.png", "pca_content2.png"]
    groups = run.model.code_groups()
    for n, codes in enumerate(decoded):  # (2 seeds x 3 values, D): only content group n changes
        codes = codes.reshape(2, 3, -1)
        moved = (codes - codes[:, :1]).abs().amax(dim=(0, 1)) > 1e-6
        assert moved[groups[n]].any()
        assert not moved[[d for g, dims in enumerate(groups) if g != n for d in dims]].any()


def test_eval_scores_an_fdae_run_with_its_protocol_and_self_mig(fdae_run: Path, capsys) -> None:
    import json

    assert main(["eval", str(fdae_run), "--metrics", "self_mig", "--preset", "fast"]) == 0
    results = json.loads((fdae_run / "results.json").read_text())
    entry = results["entries"]["self_mig"]
    assert entry["protocol"] == "fdae" and entry["group_dims"] == 36 // 4
    assert entry["groups"] == [list(range(8 * g, 8 * g + 8)) for g in range(4)]  # 2 content + 2 mask codes
    scores = results["metrics"]["self_mig"]
    assert len(scores["per_code"]) == 4 and 0.0 <= scores["self_mig"] <= 1.0
    assert "| self_mig |" in capsys.readouterr().out
