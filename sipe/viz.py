"""Pictures for reports: VOC-palette label images, contact sheets of images with their masks."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sipe.io import IGNORE_INDEX, atomic_path, voc_palette

PAD = 4                 # pixels between tiles and around the sheet
CAPTION_HEIGHT = 14     # pixels of the caption strip under each tile
SHEET_BACKGROUND = (40, 40, 40)
LETTERBOX = (96, 96, 96)
IGNORE_COLOUR = (255, 255, 255)

_LUT = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)
_LUT[IGNORE_INDEX] = IGNORE_COLOUR


def colorize_labels(label: np.ndarray) -> np.ndarray:
    """A label map (uint8 class indices, 255 = ignore) as a uint8 RGB image in VOC colours, ignore white."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError("label values must lie in 0..255")
        label = label.astype(np.uint8)
    return _LUT[label]


def _as_rgb(image: np.ndarray) -> Image.Image:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255.0 if image.max(initial=0) <= 1.0 else image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be [H,W], [H,W,3] or [H,W,4], got shape {image.shape}")
    return Image.fromarray(np.ascontiguousarray(image[..., :3]), mode="RGB")


def _letterbox(image: Image.Image, tile: int, resample) -> Image.Image:
    """``image`` scaled to fit a ``tile`` x ``tile`` square (aspect kept), centred on grey."""
    w, h = image.size
    scale = tile / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = Image.new("RGB", (tile, tile), LETTERBOX)
    canvas.paste(image.resize(size, resample), ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return canvas


def contact_sheet_size(count: int, columns: int = 4, tile: int = 160) -> tuple[int, int]:
    """(width, height) in pixels of the sheet :func:`contact_sheet` draws for ``count`` tiles."""
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    return (cols * (2 * tile + PAD) + (cols + 1) * PAD, rows * (tile + CAPTION_HEIGHT) + (rows + 1) * PAD)


def fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels in ``font``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def contact_sheet(images: list[np.ndarray], masks: list[np.ndarray], captions: list[str],
                  columns: int = 4, tile: int = 160) -> Image.Image:
    """A grid of tiles; each shows an image and, to its right, its colourised mask (ignore white),
    both letterboxed to ``tile`` x ``tile``, with a one-line caption underneath.

    The sheet measures :func:`contact_sheet_size` pixels.
    """
    if not (len(images) == len(masks) == len(captions)):
        raise ValueError(f"need as many masks and captions as images, got {len(images)}, {len(masks)}, {len(captions)}")
    if not images:
        raise ValueError("contact sheet needs at least one image")
    if columns < 1 or tile < 8:
        raise ValueError(f"columns must be >= 1 and tile >= 8, got {columns} and {tile}")
    width, height = contact_sheet_size(len(images), columns, tile)
    cols = max(1, min(columns, len(images)))
    sheet = Image.new("RGB", (width, height), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for n, (image, mask, caption) in enumerate(zip(images, masks, captions)):
        row, col = divmod(n, cols)
        x = PAD + col * (2 * tile + 2 * PAD)
        y = PAD + row * (tile + CAPTION_HEIGHT + PAD)
        sheet.paste(_letterbox(_as_rgb(image), tile, Image.Resampling.BILINEAR), (x, y))
        sheet.paste(_letterbox(Image.fromarray(colorize_labels(mask), mode="RGB"), tile, Image.Resampling.NEAREST),
                    (x + tile + PAD, y))
        draw.text((x + 1, y + tile + 1), fit_text(draw, str(caption), font, 2 * tile + PAD - 2), fill=(235, 235, 235),
                  font=font)
    return sheet


def save_png(path: str | os.PathLike, image: Image.Image | np.ndarray) -> None:
    """Write ``image`` (PIL image or uint8 array) as a PNG, atomically."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.ascontiguousarray(image))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
