"""Pictures for reports: VOC-palette label images, contact sheets of images with their masks, and
localisation-map overlays (jet heat maps blended over the image, CAM above IS-CAM)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sipe.io import IGNORE_INDEX, atomic_path, voc_palette

PAD = 4                 # pixels between tiles and around the sheet
CAPTION_HEIGHT = 14     # pixels of the caption strip under each tile
SHEET_BACKGROUND = (40, 40, 40)
LETTERBOX = (96, 96, 96)
IGNORE_COLOUR = (255, 255, 255)
TILE_HEIGHT = 128       # pixels; every tile of an overlay row is scaled to this height (aspect kept)
HEAT_ALPHA = 0.5        # weight of the heat map in an overlay's blend
TEXT_COLOUR = (235, 235, 235)

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


def check_rgb(image) -> np.ndarray:
    """``image`` as a contiguous uint8 RGB [H,W,3] array; ``ValueError`` for anything else."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 RGB [H,W,3], got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def jet(maps: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) → uint8 RGB with the jet colour map (values clipped)."""
    from matplotlib import colormaps

    values = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0.0, 1.0)
    return (colormaps["jet"](values)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def blend_heat(image: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """``heat`` [H,W] in [0,1] jet-coloured and blended over uint8 RGB ``image`` [H,W,3]."""
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * jet(heat).astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _tile_row(tiles: Sequence[np.ndarray], captions: Sequence[str], tile_height: int) -> Image.Image:
    height, width = tiles[0].shape[:2]
    tile_width = max(1, round(width * tile_height / height))
    row = Image.new("RGB", (len(tiles) * (tile_width + PAD) + PAD, tile_height + CAPTION_HEIGHT + PAD),
                    SHEET_BACKGROUND)
    draw = ImageDraw.Draw(row)
    font = ImageFont.load_default()
    for n, (tile, caption) in enumerate(zip(tiles, captions)):
        x = PAD + n * (tile_width + PAD)
        picture = Image.fromarray(tile).resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        row.paste(picture, (x, PAD))
        draw.text((x + 1, PAD + tile_height + 1), fit_text(draw, caption, font, tile_width - 2),
                  fill=TEXT_COLOUR, font=font)
    return row


def class_label(class_names: Sequence[str], key: int) -> str:
    """The name of class ``key`` (``class <key>`` beyond ``class_names``)."""
    return class_names[key] if 0 <= key < len(class_names) else f"class {key}"


def cam_with_background_row(cam: np.ndarray) -> np.ndarray:
    """CAM rows [K,H,W] of the present classes with a background row on top: 1 − their max (eq. 2)."""
    cam = np.asarray(cam, dtype=np.float32)
    background = 1.0 - (cam.max(axis=0) if cam.shape[0] else np.zeros(cam.shape[1:], np.float32))
    return np.concatenate([background[None], cam], axis=0)


def overlay(image: np.ndarray, maps: np.ndarray, keys, class_names: Sequence[str], title: str = "",
            tile_height: int = TILE_HEIGHT) -> Image.Image:
    """One row: the image (captioned ``title``), then per channel of ``maps`` [K,H,W] its jet heat map
    blended over the image, captioned with ``class_names[keys[k]]``. ``keys`` is aligned with the rows."""
    image = check_rgb(image)
    maps = np.asarray(maps)
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if maps.ndim != 3 or maps.shape[0] != keys.size or maps.shape[1:] != image.shape[:2]:
        raise ValueError(f"maps must be [{keys.size},{image.shape[0]},{image.shape[1]}] for {keys.size} keys "
                         f"and this image, got shape {maps.shape}")
    tiles = [image] + [blend_heat(image, m) for m in maps]
    captions = [title] + [class_label(class_names, k) for k in keys]
    return _tile_row(tiles, captions, tile_height)


def stack_rows(rows: Sequence[Image.Image]) -> Image.Image:
    """Rows (e.g. from :func:`overlay`) stacked top to bottom, left-aligned on a dark sheet."""
    if not rows:
        raise ValueError("need at least one row")
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) + PAD), SHEET_BACKGROUND)
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    return sheet


def cam_vs_is_cam(image: np.ndarray, keys, cam: np.ndarray, is_cam: np.ndarray, class_names: Sequence[str],
                  title: str = "", tile_height: int = TILE_HEIGHT) -> Image.Image:
    """Two rows for one image, columns aligned: the CAM (its background column is 1 − max over the
    present CAM rows, eq. 2) above the IS-CAM (its own background channel)."""
    keys = np.asarray(keys, dtype=np.int64)
    suffix = f" {title}" if title else ""
    return stack_rows([
        overlay(image, cam_with_background_row(cam), keys, class_names, f"CAM{suffix}", tile_height),
        overlay(image, np.asarray(is_cam, dtype=np.float32), keys, class_names, f"IS-CAM{suffix}", tile_height),
    ])
