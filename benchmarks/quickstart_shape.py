"""Does a sprites run reconstruct *shape*? Nearest-shape accuracy of its reconstructions.

The quickstart disentangles position and scale, but a VAE on 32x32 sprites tends to draw every
square, ellipse and heart as the same round blob. This script scores a finished run on the
``sprites`` data: for 2000 random images it reconstructs each one and finds the image nearest to
the reconstruction (squared error) among the 3 shapes x all scales at the image's own orientation
and position, and among filled discs of 19 radii centred on the reconstruction (the "blob" answer). It reports
each shape's recall (nearest candidate is the true shape) and how often the nearest candidate is a
disc. Without the discs a blob of a square's area is still nearest some square and scores as
right; with them, a blob is counted as a blob. It also writes ``shape_recon.png`` into the run
(rows: each shape at the three largest scales, input above reconstruction) and prints MIG per
factor from the run's ``results.json`` when there is one.

    python benchmarks/quickstart_shape.py RUN_DIR [RUN_DIR ...] [--json OUT.json]

The settings tried for the quickstart and their scores are in
``benchmarks/results/quickstart_shape.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

NUM_IMAGES = 2000
#: disc radii (pixels of the 64x64 frame): area-equivalent to every square/heart/ellipse scale
DISC_RADII = np.linspace(3.0, 12.0, 19)


def _images(data: Any, factors: np.ndarray) -> torch.Tensor:
    """Float (n, C, H, W) images in [0, 1] of the given factor rows."""
    from disentkit.viz.images import data_batch

    return data_batch(data, data.factors_to_index(factors))


def _discs(recon: torch.Tensor, size: int) -> torch.Tensor:
    """(n, len(DISC_RADII), H*W) filled discs centred on each reconstruction's intensity centroid.

    Centred on the reconstruction rather than the sprite position because a heart's mass sits off
    its position: a blob drawn for a heart is centred where the heart's mass is.
    """
    from disentkit.data.procedural import area_downsample

    weights = recon.view(-1, size, size).clamp(min=0).double()
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) * (64 / size)
    mass = weights.sum((1, 2)).clamp(min=1e-9)
    cx = ((weights.sum(1) * coords).sum(1) / mass).numpy()
    cy = ((weights.sum(2) * coords).sum(1) / mass).numpy()
    centre = np.arange(64) + 0.5
    dx = centre[None, None, :] - cx[:, None, None]
    dy = centre[None, :, None] - cy[:, None, None]
    radius = np.hypot(dx, dy)[:, None]  # (n, 1, 64, 64)
    inside = (radius <= DISC_RADII[None, :, None, None]).astype(np.uint8)
    if size == 32:
        pixels = area_downsample(inside).astype(np.float32) / 255.0
    else:
        pixels = inside.astype(np.float32)
    return torch.from_numpy(pixels).flatten(2)


def shape_scores(model: Any, data: Any, seed: int = 0) -> dict[str, Any]:
    """Per-shape recall of ``model``'s reconstructions, discs counting as the "blob" answer."""
    factors = data.sample_factors(NUM_IMAGES, np.random.RandomState(seed))
    with torch.no_grad():
        recon = torch.cat([model.reconstruct(_images(data, factors[s:s + 500]))
                           for s in range(0, NUM_IMAGES, 500)]).flatten(1)
    num_shapes, num_scales = data.factors_num_values[0], data.factors_num_values[1]
    errors = torch.empty(NUM_IMAGES, num_shapes * num_scales + len(DISC_RADII))
    for shape in range(num_shapes):
        for scale in range(num_scales):
            alt = factors.copy()
            alt[:, 0], alt[:, 1] = shape, scale
            errors[:, shape * num_scales + scale] = (
                (recon - _images(data, alt).flatten(1)) ** 2).sum(1)
    for start in range(0, NUM_IMAGES, 500):
        rows = slice(start, start + 500)
        discs = _discs(recon[rows], data.config.image_size)
        errors[rows, num_shapes * num_scales:] = ((recon[rows, None] - discs) ** 2).sum(2)
    nearest = errors.argmin(1).numpy()
    predicted = np.where(nearest < num_shapes * num_scales, nearest // num_scales, num_shapes)
    per_shape = [float((predicted[factors[:, 0] == s] == s).mean()) for s in range(num_shapes)]
    blob = [float((predicted[factors[:, 0] == s] == num_shapes).mean())
            for s in range(num_shapes)]
    return {"balanced_shape_accuracy": float(np.mean(per_shape)), "per_shape": per_shape,
            "blob_rate_per_shape": blob}


def save_grid(model: Any, data: Any, path: Path) -> None:
    """Each shape at the three largest scales, 8 columns: input row above reconstruction row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = data.sample_factors(8, np.random.RandomState(1))
    rows = []
    for shape in range(data.factors_num_values[0]):
        factors = base.copy()
        factors[:, 0] = shape
        factors[:, 1] = data.factors_num_values[1] - 1 - np.arange(8) % 3
        images = _images(data, factors)
        with torch.no_grad():
            rows += [images, model.reconstruct(images)]
    grid = torch.stack(rows)[:, :, 0]  # (rows, 8, H, W), first channel
    size = grid.shape[-1]
    picture = grid.permute(0, 2, 1, 3).reshape(len(rows) * size, 8 * size).numpy()
    plt.imsave(path, np.kron(picture, np.ones((4, 4))), cmap="gray", vmin=0, vmax=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from disentkit.run_loading import load_run

    records = []
    for run_dir in args.runs:
        loaded = load_run(run_dir)
        model, data = loaded.model.eval(), loaded.data()
        record = {"run": run_dir.name, **shape_scores(model, data)}
        results = run_dir / "results.json"
        if results.is_file():
            mig = json.loads(results.read_text())["metrics"].get("mig", {})
            record["mig"] = mig.get("discrete_mig")
            record["mig_per_factor"] = mig.get("mig_per_factor")
        save_grid(model, data, run_dir / "shape_recon.png")
        records.append(record)
        print(json.dumps(record), flush=True)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
