"""Pictures and tables for reports: VOC-palette label images, contact sheets of images with their masks
(with a legend of the class colours), localisation-map overlays (jet heat maps blended over the image,
CAM above IS-CAM, with a colour bar), and results tables as small self-contained HTML pages (the
Snakemake report shows an HTML file inline, a CSV only as a download)."""

from __future__ import annotations

import functools
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sipe.io import IGNORE_INDEX, atomic_path, voc_palette, write_text

PAD = 4                 # pixels between tiles and around the sheet
FONT_SIZE = 14          # pixels; captions, legends and colour-bar labels (legible at 100 % zoom)
LINE_HEIGHT = 18        # pixels of one line of text
CAPTION_LINES = 2       # a caption wraps onto at most this many lines (then it ends in "...")
CAPTION_HEIGHT = CAPTION_LINES * LINE_HEIGHT + 2  # pixels of the caption strip under each tile
SWATCH = 14             # pixels; side of a legend's colour square
COLOUR_BAR = (256, 14)  # pixels; width and height of the heat maps' colour bar
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
    """(width, height) in pixels of the grid of ``count`` tiles that :func:`contact_sheet` draws (its legend,
    when drawn, adds :func:`legend`'s height below)."""
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    return (cols * (2 * tile + PAD) + (cols + 1) * PAD, rows * (tile + CAPTION_HEIGHT) + (rows + 1) * PAD)


@functools.lru_cache(maxsize=4)
def text_font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels; Pillow's own scalable font without it."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels in ``font``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font, width: int, lines: int = CAPTION_LINES) -> list[str]:
    """``text`` as at most ``lines`` lines of at most ``width`` pixels: broken at newlines, then between
    words or after a hyphen inside a word ("magenta-" / "checker"); a piece too long for a line is cut,
    and the last line ends in "..." when text is left over."""
    out: list[str] = []
    for paragraph in str(text).split("\n"):
        # pieces with the separator that joins them to the previous piece on one line
        pieces = [(part, " " if k == 0 else "") for word in paragraph.split()
                  for k, part in enumerate(re.split(r"(?<=-)(?=.)", word))]
        current = ""
        for part, sep in pieces:
            candidate = f"{current}{sep}{part}" if current else part
            if current and draw.textlength(candidate, font=font) > width:
                out.append(current)
                current = part
            else:
                current = candidate
        out.append(current)
    if len(out) > lines:  # the text left over goes onto the last line, cut with an ellipsis
        last = " ".join(line for line in out[lines - 1:] if line)
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        out = out[:lines - 1] + [last.rstrip() + "..."]
    return [fit_text(draw, line, font, width) for line in out]


def draw_caption(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, width: int,
                 lines: int = CAPTION_LINES) -> None:
    """``text`` wrapped into ``lines`` lines of ``width`` pixels, top-left at ``xy`` (:func:`wrap_text`)."""
    font = text_font()
    for n, line in enumerate(wrap_text(draw, text, font, width, lines)):
        draw.text((xy[0], xy[1] + n * LINE_HEIGHT), line, fill=TEXT_COLOUR, font=font)


def class_colour(key: int) -> tuple[int, int, int]:
    """The RGB colour :func:`colorize_labels` gives class ``key`` (255 = ignore: white)."""
    return tuple(int(v) for v in _LUT[int(key)])


def legend_entries(masks: Sequence[np.ndarray], class_names: Sequence[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of every label value found in ``masks``, by class index, "ignore" (255) last."""
    present = sorted(set().union(*(np.unique(np.asarray(m)).tolist() for m in masks)) if masks else set())
    return [("ignore" if key == IGNORE_INDEX else class_label(class_names, key), class_colour(key))
            for key in present]


def legend(entries: Sequence[tuple[str, tuple[int, int, int]]], width: int, title: str = "Colours:") -> Image.Image:
    """A strip ``width`` pixels wide listing ``entries`` (name, RGB) as a colour square (outlined, so that
    black shows on the dark sheet) and the name, left to right, wrapped onto as many lines as needed."""
    font = text_font()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = [(title, None)] + list(entries) if title else list(entries)
    lines: list[list[tuple[int, str, tuple | None]]] = [[]]
    x = PAD
    for name, colour in items:
        item = (SWATCH + 5 if colour is not None else 0) + round(scratch.textlength(name, font=font))
        if lines[-1] and x + item > width - PAD:
            lines.append([])
            x = PAD
        lines[-1].append((x, name, colour))
        x += item + 16
    strip = Image.new("RGB", (width, len(lines) * LINE_HEIGHT + 2 * PAD), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for row, line in enumerate(lines):
        y = PAD + row * LINE_HEIGHT
        for x, name, colour in line:
            if colour is not None:
                top = y + (LINE_HEIGHT - SWATCH) // 2
                draw.rectangle((x, top, x + SWATCH - 1, top + SWATCH - 1), fill=colour, outline=TEXT_COLOUR)
                x += SWATCH + 5
            draw.text((x, y), fit_text(draw, name, font, width - PAD - x), fill=TEXT_COLOUR, font=font)
    return strip


def colour_bar(width: int, label: str = "Heat maps: 0 = no activation, 1 = the map's maximum") -> Image.Image:
    """A strip ``width`` pixels wide: ``label`` (wrapped onto at most two lines), under it the jet colour bar
    of the heat maps from 0 to 1 (up to ``COLOUR_BAR`` pixels) with ticks at 0, 0.5 and 1."""
    bar_height = COLOUR_BAR[1]
    width = max(width, 96)
    bar_width = min(COLOUR_BAR[0], width - 2 * PAD - 24)
    font = text_font()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = wrap_text(scratch, label, font, width - 2 * PAD, lines=2)
    top = PAD + len(lines) * LINE_HEIGHT
    strip = Image.new("RGB", (width, top + bar_height + 2 + LINE_HEIGHT + PAD), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for n, line in enumerate(lines):
        draw.text((PAD + 1, PAD + n * LINE_HEIGHT), line, fill=TEXT_COLOUR, font=font)
    x0 = PAD + 12  # room for the centred "0" under the bar's left end
    gradient = jet(np.linspace(0.0, 1.0, bar_width, dtype=np.float32))
    strip.paste(Image.fromarray(np.ascontiguousarray(np.broadcast_to(gradient, (bar_height, bar_width, 3)))), (x0, top))
    draw.rectangle((x0 - 1, top - 1, x0 + bar_width, top + bar_height), outline=TEXT_COLOUR)
    for value in (0.0, 0.5, 1.0):
        x = x0 + round(value * (bar_width - 1))
        draw.line((x, top + bar_height, x, top + bar_height + 2), fill=TEXT_COLOUR)
        text = f"{value:g}"
        draw.text((x - draw.textlength(text, font=font) / 2, top + bar_height + 2), text, fill=TEXT_COLOUR, font=font)
    return strip


def contact_sheet(images: list[np.ndarray], masks: list[np.ndarray], captions: list[str],
                  columns: int = 4, tile: int = 160, class_names: Sequence[str] | None = None) -> Image.Image:
    """A grid of tiles; each shows an image and, to its right, its colourised mask (ignore white),
    both letterboxed to ``tile`` x ``tile``, with a caption of up to two lines underneath.

    The grid measures :func:`contact_sheet_size` pixels; with ``class_names`` a :func:`legend` of every
    label value in ``masks`` (name and colour) follows below it.
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
    for n, (image, mask, caption) in enumerate(zip(images, masks, captions)):
        row, col = divmod(n, cols)
        x = PAD + col * (2 * tile + 2 * PAD)
        y = PAD + row * (tile + CAPTION_HEIGHT + PAD)
        sheet.paste(_letterbox(_as_rgb(image), tile, Image.Resampling.BILINEAR), (x, y))
        sheet.paste(_letterbox(Image.fromarray(colorize_labels(mask), mode="RGB"), tile, Image.Resampling.NEAREST),
                    (x + tile + PAD, y))
        draw_caption(draw, (x + 1, y + tile + 1), str(caption), 2 * tile + PAD - 2)
    if class_names is None:
        return sheet
    return append_below(sheet, legend(legend_entries(masks, class_names), sheet.width, "Label colours:"))


def append_below(sheet: Image.Image, strip: Image.Image) -> Image.Image:
    """``strip`` (e.g. a legend) under ``sheet``, left-aligned; the wider of the two sets the width."""
    out = Image.new("RGB", (max(sheet.width, strip.width), sheet.height + strip.height), SHEET_BACKGROUND)
    out.paste(sheet, (0, 0))
    out.paste(strip, (0, sheet.height))
    return out


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


def caption_lines(captions: Sequence[str], width: int) -> int:
    """How many lines (1 to ``CAPTION_LINES``) the longest of ``captions`` takes in ``width`` pixels."""
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return max([1] + [len(wrap_text(scratch, c, text_font(), width)) for c in captions])


def _tile_row(tiles: Sequence[np.ndarray], captions: Sequence[str], tile_height: int) -> Image.Image:
    """Tiles side by side, each scaled to ``tile_height`` (aspect of the first), captioned underneath on as
    many lines as the longest caption needs (at most ``CAPTION_LINES``)."""
    height, width = tiles[0].shape[:2]
    tile_width = max(1, round(width * tile_height / height))
    lines = caption_lines(captions, tile_width - 2)
    row = Image.new("RGB", (len(tiles) * (tile_width + PAD) + PAD, tile_height + lines * LINE_HEIGHT + 2 + PAD),
                    SHEET_BACKGROUND)
    draw = ImageDraw.Draw(row)
    for n, (tile, caption) in enumerate(zip(tiles, captions)):
        x = PAD + n * (tile_width + PAD)
        picture = Image.fromarray(tile).resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        row.paste(picture, (x, PAD))
        draw_caption(draw, (x + 1, PAD + tile_height + 1), caption, tile_width - 2, lines)
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


def with_colour_bar(sheet: Image.Image) -> Image.Image:
    """An overlay sheet with the heat maps' :func:`colour_bar` above it (seen first in a tall sheet)."""
    return append_below(colour_bar(sheet.width), sheet)


def title_strip(title: str, width: int) -> Image.Image:
    """One line of text, ``width`` pixels wide, on the sheet's background (a heading above rows)."""
    strip = Image.new("RGB", (width, LINE_HEIGHT + PAD), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    draw.text((PAD + 1, PAD), fit_text(draw, title, text_font(), width - 2 * PAD), fill=TEXT_COLOUR, font=text_font())
    return strip


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
    """Two rows for one image, columns aligned, under a heading line ``title`` (when given): the CAM (its
    background column is 1 − max over the present CAM rows, eq. 2) above the IS-CAM (its own background
    channel)."""
    keys = np.asarray(keys, dtype=np.int64)
    rows = [
        overlay(image, cam_with_background_row(cam), keys, class_names, "CAM", tile_height),
        overlay(image, np.asarray(is_cam, dtype=np.float32), keys, class_names, "IS-CAM", tile_height),
    ]
    return stack_rows(([title_strip(title, rows[0].width)] if title else []) + rows)


# ----------------------------------------------------------------------------------------------
# Tables for the HTML report
# ----------------------------------------------------------------------------------------------

MISSING = "\u2014"  # an em dash: no value (e.g. no paper number)

TABLE_CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 15px; color: #1d2733;
       margin: 16px; background: #fff; }
h1 { font-size: 19px; margin: 0 0 10px 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #c9d1d9; padding: 5px 10px; }
th { background: #e8edf2; text-align: left; vertical-align: bottom; }
td { white-space: nowrap; }
td.long { white-space: normal; min-width: 14em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { text-align: center; color: #6b7682; }
th.paper, td.paper { background: #fff4d6; }
tbody tr:nth-child(even) td:not(.paper) { background: #f6f8fa; }
p.note { max-width: 60em; line-height: 1.4; color: #3b4652; }
"""


def format_cell(value) -> str:
    """One table cell as text: missing (None, NaN) as an em dash, floats with 2 decimals, else ``str``."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.2f}"
    return str(value)


def html_table(table, title: str, note: str = "") -> str:
    """``table`` (a pandas DataFrame) as a self-contained HTML page (no scripts, no external files): ``title``
    as heading, one row per table row (cells by :func:`format_cell`), numbers right-aligned, missing values
    centred, the columns whose name starts with "paper" shaded (the paper's numbers beside ours), ``note``
    as a paragraph under it."""
    columns = [str(c) for c in table.columns]
    numeric = {c for c, dtype in zip(columns, table.dtypes) if dtype.kind in "iuf"}

    def cls(column: str, text: str | None = None) -> str:
        number = column in numeric or (text is not None and _is_number(text))
        names = ((["missing"] if text == MISSING else ["num"] if number else ["long"] if text and len(text) > 32
                 else []) + (["paper"] if column.lower().startswith("paper") else []))
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f"<th{cls(c)}>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in table.itertuples(index=False, name=None):
        texts = [format_cell(value) for value in row]
        body.append("<tr>" + "".join(f"<td{cls(c, t)}>{html.escape(t)}</td>" for c, t in zip(columns, texts))
                    + "</tr>")
    note_html = f'<p class="note">{html.escape(note)}</p>\n' if note else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{TABLE_CSS}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"
            f"{note_html}</body>\n</html>\n")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_html_table(path: str | os.PathLike, table, title: str, note: str = "") -> None:
    """Write :func:`html_table` to ``path``, atomically."""
    write_text(Path(path), html_table(table, title, note))


def percent_columns(table, columns: Mapping[str, str]):
    """A copy of ``table`` whose fraction columns ``columns`` (name → shown name) are in %, 2 decimals."""
    shown = table.copy()
    for name in columns:
        shown[name] = (100.0 * shown[name].astype(float)).round(2)
    return shown.rename(columns=dict(columns))


# The per-class CSV of an evaluation (sipe.metrics.per_class_table): its fractions, shown in %.
PER_CLASS_PERCENT = {"iou": "IoU (%)", "fp": "FP (% of union)", "fn": "FN (% of union)", "accuracy": "accuracy (%)"}
PER_CLASS_NOTE = ("IoU, and the false-positive and false-negative shares of each class's union, in %; accuracy = "
                  "recall of the class's GT pixels; \u2014 = the class has no GT pixel. paper_IoU: the paper gives no "
                  "per-class numbers (only mIoU), so it is \u2014 for every class.")


def write_per_class_html(path: str | os.PathLike, per_class, title: str) -> None:
    """The per-class scores of an evaluation as an HTML page (:func:`html_table`): fractions in %, with an
    empty ``paper_IoU`` column beside the IoU (the paper reports none per class)."""
    shown = percent_columns(per_class, PER_CLASS_PERCENT)
    shown.insert(list(shown.columns).index(PER_CLASS_PERCENT["iou"]) + 1, "paper_IoU", None)
    write_html_table(path, shown, title, PER_CLASS_NOTE)
