"""Sample grids written during training (``log.images_every``).

Every ``log.images_every`` steps the engine writes ``samples/step_N.png``: a 4 x 4 grid of images
from the model's ``sample(num, generator)``, drawn with the EMA weights when the run keeps an EMA
(what evaluation and sampling use later) and always from the same seed, so the grids of one run
show the same noise at different steps. The draw uses its own generator: the training noise,
and so exact resume, is unaffected.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from disentkit.errors import ConfigError

#: images per grid (rows x columns)
GRID = (4, 4)
#: the folder in the run directory
SAMPLES_DIR = "samples"


def check_can_sample(model: Any, images_every: int) -> None:
    """ConfigError (one line) when ``log.images_every`` is set for a model without ``sample``."""
    if images_every and not callable(getattr(model, "sample", None)):
        name = getattr(model, "registry_name", type(model).__name__)
        raise ConfigError(
            f"log.images_every = {images_every} draws sample grids with the model's sample(), "
            f"which {name} does not have; set log.images_every=0"
        )
    if images_every and getattr(model, "has_code_prior", True) is False:  # pdae, diti: refused up front
        name = getattr(model, "registry_name", type(model).__name__)
        raise ConfigError(
            f"log.images_every = {images_every} draws unconditional samples, which {name} cannot: it "
            "learns no prior over its codes; set log.images_every=0"
        )


def sample_grid_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step_{step}.png"


@torch.no_grad()
def write_sample_grid(model: Any, path: Path, seed: int, device: torch.device) -> Path:
    """Draw ``GRID`` images with ``model.sample`` (noise from a generator seeded ``seed`` on
    ``device``) and save them as one PNG at ``path``; the model is left in the mode it was in."""
    from PIL import Image

    from disentkit.training.checkpoint import _write_atomic
    from disentkit.viz.images import make_grid, to_uint8

    rows, cols = GRID
    generator = torch.Generator(device=device).manual_seed(int(seed))
    was_training = model.training
    model.eval()
    try:
        images = model.sample(rows * cols, generator=generator)
    finally:
        model.train(was_training)
    tiles = to_uint8(_unit_range(images.float(), model))
    grid = Image.fromarray(make_grid(tiles.reshape(rows, cols, *tiles.shape[1:])))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    # atomically, as every run file: a kill mid-write leaves the old grid or none, never half
    _write_atomic(Path(path), "wb", lambda handle: handle.write(buffer.getvalue()))
    return Path(path)


def _unit_range(images: torch.Tensor, model: Any) -> torch.Tensor:
    """A model's images in [0, 1]: diffusion models (``input_range = "pm1"``) return [-1, 1]
    (the one pixel conversion, :func:`disentkit.pixels.for_display`)."""
    from disentkit.pixels import for_display

    return for_display(images, model)
