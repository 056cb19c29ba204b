"""Image plumbing for the visualisations: tensors -> uint8 tiles -> labelled grids -> PNG / GIF.

Everything is Pillow + numpy (no torchvision, no ImageMagick): grids are assembled with numpy,
labels are drawn with Pillow's bundled font, and animated GIFs are written with
``Image.save(save_all=True)`` (where 1Konny/FactorVAE calls ImageMagick's ``convert``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from disentkit.pixels import for_display, for_model
from disentkit.pixels import to_model_input as uint8_to_model_input

__all__ = [
    "add_caption",
    "data_batch",
    "label_grid",
    "make_grid",
    "save_gif",
    "save_png",
    "to_display",
    "to_model_input",
    "to_uint8",
]

#: smallest tile side shown; smaller images are upscaled with nearest-neighbour so they stay legible
MIN_TILE = 64
#: background of padding and label areas (white) and text colour (black)
BACKGROUND = 255
TEXT_FILL = (0, 0, 0)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """float images in [0, 1], (..., C, H, W) -> uint8 (..., H, W, 3) (grey is repeated to RGB)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 3:
        raise ValueError(f"expected images shaped (..., C, H, W), got shape {images.shape}")
    channels = images.shape[-3]
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 image channels, got {channels} (shape {images.shape})")
    out = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    out = np.moveaxis(out, -3, -1)
    if channels == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def _upscale_factor(height: int, width: int, min_tile: int) -> int:
    return max(1, -(-min_tile // max(1, min(height, width))))


def make_grid(tiles: np.ndarray, pad: int = 2, min_tile: int = MIN_TILE) -> np.ndarray:
    """Tile a (rows, cols, H, W, 3) uint8 array into one image with ``pad`` pixels between tiles.

    Tiles smaller than ``min_tile`` are upscaled by an integer factor (nearest neighbour). The
    result is ``(rows * (h + pad) + pad, cols * (w + pad) + pad, 3)`` with ``h, w`` the tile size
    after upscaling.
    """
    tiles = np.asarray(tiles)
    if tiles.ndim != 5 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(
            f"make_grid expects uint8 tiles shaped (rows, cols, H, W, 3), got {tiles.dtype} "
            f"{tiles.shape}; convert with to_uint8 first"
        )
    rows, cols, h, w, _ = tiles.shape
    k = _upscale_factor(h, w, min_tile)
    if k > 1:
        tiles = tiles.repeat(k, axis=2).repeat(k, axis=3)
        h, w = h * k, w * k
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), BACKGROUND, np.uint8)
    for r in range(rows):
        top = pad + r * (h + pad)
        row = tiles[r]  # (cols, h, w, 3) -> one strip with the pads
        for c in range(cols):
            left = pad + c * (w + pad)
            grid[top : top + h, left : left + w] = row[c]
    return grid


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def label_grid(
    grid: np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    pad: int = 2,
    font_size: int = 13,
    title: str | None = None,
) -> Image.Image:
    """Add row labels on the left, column labels above and an optional title to a grid.

    ``grid`` is the output of :func:`make_grid` with ``pad``; row/column centres are computed
    from its size, so the labels line up with the tiles.
    """
    font = _font(font_size)
    height, width = grid.shape[:2]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    line = text_size("Ag")[1] + 6
    left_margin = (max(text_size(t)[0] for t in row_labels) + 10) if row_labels else 0
    top_margin = (line if col_labels else 0) + (line if title else 0)
    canvas = Image.new("RGB", (width + left_margin, height + top_margin), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (left_margin, top_margin))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=TEXT_FILL, font=font)
    if row_labels:
        step = (height - pad) / len(row_labels)
        for i, text in enumerate(row_labels):
            y = top_margin + pad + (i + 0.5) * step - text_size(text)[1] / 2 - 2
            draw.text((4, y), text, fill=TEXT_FILL, font=font)
    if col_labels:
        step = (width - pad) / len(col_labels)
        y = (line if title else 0) + 3
        for j, text in enumerate(col_labels):
            x = left_margin + pad + (j + 0.5) * step - text_size(text)[0] / 2
            draw.text((x, y), text, fill=TEXT_FILL, font=font)
    return canvas


def add_caption(image: Image.Image, caption: str, font_size: int = 13) -> Image.Image:
    """A copy of ``image`` with a one-line caption strip on top."""
    font = _font(font_size)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    height = draw.textbbox((0, 0), "Ag", font=font)[3] + 8
    out = Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    out.paste(image, (0, height))
    ImageDraw.Draw(out).text((4, 3), caption, fill=TEXT_FILL, font=font)
    return out


def save_png(image: Image.Image | np.ndarray, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, format="PNG")
    return path


def save_gif(
    frames: Sequence[Image.Image], path: Path, duration_ms: int = 100, bounce: bool = False
) -> Path:
    """Write an endlessly looping animated GIF (Pillow ``save_all``). ``bounce`` plays the frames
    forward then backward (without repeating the end frames), a smoother loop for traversals."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    frames = list(frames)
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    size = frames[0].size
    frames = [f if f.size == size else f.resize(size) for f in frames]
    # Adaptive palette without dithering: exact for grey images, and far smaller than Pillow's
    # default dithered web palette (which turns flat areas into noise that compresses badly).
    frames = [
        f if f.mode == "P" else
        f.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                  dither=Image.Dither.NONE)
        for f in frames
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        path, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms,
        loop=0, disposal=1,
    )
    return path


def to_model_input(images01: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Scale [0, 1] images to the range the model expects (``Model.input_range``;
    :func:`disentkit.pixels.to_model_range`, the conversion the training loop uses)."""
    return for_model(images01, model)


def to_display(images: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Images a model returned (decoded, reconstructed, sampled; in its ``input_range``) -> [0, 1]."""
    return for_display(images, model)


def data_batch(data, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
    """float NCHW [0, 1] images for dataset ``indices`` (through the uint8 training path)."""
    indices = np.asarray(indices, dtype=np.int64)
    batch = data.uint8_batch(indices)
    if not isinstance(batch, torch.Tensor):
        batch = torch.from_numpy(np.asarray(batch))
    return uint8_to_model_input(batch, float(getattr(data, "value_max", 255)), "01")
