"""Label colouring, contact sheets with their legend, captions, and the HTML pages of per-class tables."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from sipe.viz import (
    CAPTION_HEIGHT,
    LINE_HEIGHT,
    PAD,
    SHEET_BACKGROUND,
    class_colour,
    colorize_labels,
    contact_sheet,
    contact_sheet_size,
    draw_caption,
    legend,
    legend_entries,
    save_png,
    text_font,
    wrap_text,
    write_per_class_html,
)


def test_colorize_uses_voc_palette_and_white_ignore():
    label = np.array([[0, 1, 2], [15, 255, 1]], dtype=np.uint8)
    rgb = colorize_labels(label)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[0, 1]) == (128, 0, 0)
    assert tuple(rgb[0, 2]) == (0, 128, 0)
    assert tuple(rgb[1, 0]) == (192, 128, 128)  # person
    assert tuple(rgb[1, 1]) == (255, 255, 255)
    assert np.array_equal(colorize_labels(label.astype(np.int64)), rgb)
    with pytest.raises(ValueError):
        colorize_labels(np.zeros((2, 2, 2), np.uint8))


def test_contact_sheet_size_and_tiles():
    tile, columns = 32, 2
    images = [np.full((20, 40, 3), 200, np.uint8) for _ in range(5)]  # wide images: letterboxed
    masks = [np.ones((20, 40), np.uint8) for _ in range(5)]
    sheet = contact_sheet(images, masks, [f"c{i}" for i in range(5)], columns=columns, tile=tile)
    assert sheet.size == contact_sheet_size(5, columns, tile)
    assert sheet.size == (2 * (2 * 32 + PAD) + 3 * PAD, 3 * (32 + CAPTION_HEIGHT) + 4 * PAD)
    assert sheet.size == (148, 226)  # captions of two lines: 3 * (32 + 38) + 4 * 4
    px = np.asarray(sheet)
    x, y = PAD, PAD
    assert tuple(px[y + tile // 2, x + tile // 2]) == (200, 200, 200)            # image
    assert tuple(px[y + tile // 2, x + tile + PAD + tile // 2]) == (128, 0, 0)   # mask, class 1
    assert tuple(px[y + 1, x + tile // 2]) != (200, 200, 200)                    # letterbox above
    # fewer images than columns: the sheet narrows
    assert contact_sheet(images[:1], masks[:1], ["x"], columns=4, tile=tile).size == (2 * tile + 3 * PAD,
                                                                                       tile + CAPTION_HEIGHT + 2 * PAD)
    with pytest.raises(ValueError):
        contact_sheet(images, masks[:2], ["a"] * 5)


def test_save_png_roundtrip(tmp_path):
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    target = tmp_path / "sub" / "sheet.png"
    save_png(target, image)
    with Image.open(target) as im:
        assert np.array_equal(np.asarray(im), image)
    assert [p.name for p in target.parent.iterdir()] == ["sheet.png"]


NAMES = ["background", "red-ring", "green-cross", "blue-stripes", "yellow-dots"]


def _colours(pixels: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}


def test_contact_sheet_legend_names_the_colours_of_the_classes_shown():
    tile = 32
    masks = [np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8)]
    masks[0][5:15, 5:15] = 4   # yellow-dots: VOC colour 4 is navy (0, 0, 128), not yellow
    masks[1][0, :] = 255       # a void border: ignore, white
    masks[1][8:12, 8:12] = 1
    images = [np.full((20, 20, 3), 200, np.uint8)] * 2
    plain = contact_sheet(images, masks, ["a", "b"], columns=2, tile=tile)
    sheet = contact_sheet(images, masks, ["a", "b"], columns=2, tile=tile, class_names=NAMES)
    grid_w, grid_h = contact_sheet_size(2, 2, tile)
    assert plain.size == (grid_w, grid_h) and sheet.width == grid_w and sheet.height > grid_h
    pixels = np.asarray(sheet)
    assert np.array_equal(pixels[:grid_h], np.asarray(plain))  # the grid is unchanged, the legend is below it
    strip = pixels[grid_h:]
    assert legend_entries(masks, NAMES) == [("background", (0, 0, 0)), ("red-ring", (128, 0, 0)),
                                            ("yellow-dots", (0, 0, 128)), ("ignore", (255, 255, 255))]
    shown = _colours(strip)
    assert {(128, 0, 0), (0, 0, 128), (255, 255, 255), (0, 0, 0)} <= shown       # one swatch per class present
    assert class_colour(2) not in shown and class_colour(3) not in shown          # absent classes are not listed
    # each swatch is a solid square of SWATCH - 2 pixels inside its outline
    navy = np.argwhere(np.all(strip == (0, 0, 128), axis=2))
    assert len(navy) == 12 * 12 and np.ptp(navy[:, 0]) == 11 and np.ptp(navy[:, 1]) == 11


def test_legend_wraps_onto_more_lines_when_narrow():
    entries = [(name, class_colour(k)) for k, name in enumerate(NAMES)]
    wide, narrow = legend(entries, 1000), legend(entries, 160)
    assert wide.height == LINE_HEIGHT + 2 * PAD and narrow.height >= 4 * LINE_HEIGHT + 2 * PAD
    for strip in (wide, narrow):  # every colour is there, whatever the layout
        assert {class_colour(k) for k in range(5)} <= _colours(np.asarray(strip))


def test_captions_wrap_instead_of_being_cut():
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), text_font()
    assert font.size >= 14
    text = "synthetic_000001: ground truth, magenta-checker"
    lines = wrap_text(draw, text, font, 200)
    assert lines == ["synthetic_000001: ground", "truth, magenta-checker"]
    assert all(draw.textlength(line, font=font) <= 200 for line in lines)
    assert wrap_text(draw, "magenta-checker", font, 90) == ["magenta-", "checker"]  # broken after the hyphen
    assert wrap_text(draw, "CAM\nsyn_train_000001", font, 300) == ["CAM", "syn_train_000001"]
    cut = wrap_text(draw, "one two three four five six seven eight nine ten", font, 60)
    assert len(cut) == 2 and cut[-1].endswith("...")
    # drawn text is legible: glyphs at least 10 pixels tall, within the caption strip
    strip = Image.new("RGB", (300, CAPTION_HEIGHT), SHEET_BACKGROUND)
    draw_caption(ImageDraw.Draw(strip), (1, 1), "Hg ground truth", 298)
    ink = np.argwhere(np.any(np.asarray(strip) != SHEET_BACKGROUND, axis=2))
    assert np.ptp(ink[:, 0]) >= 10 and ink[:, 0].max() < LINE_HEIGHT + 2


def test_per_class_page_has_the_csv_numbers_in_percent(tmp_path):
    table = pd.DataFrame({"class_id": [0, 1, 2], "name": ["background", "a<b", "c"], "iou": [0.91234, 0.5, np.nan],
                          "fp": [0.05, 0.25, np.nan], "fn": [0.03, 0.25, np.nan], "accuracy": [0.97, 0.75, np.nan],
                          "gt_pixels": [1000, 40, 0], "pred_pixels": [990, 45, 0], "tp_pixels": [960, 30, 0]})
    write_per_class_html(tmp_path / "per_class.html", table, "Per class")
    page = (tmp_path / "per_class.html").read_text()
    header = [html.unescape(h) for h in re.findall(r"<th(?: [^>]*)?>(.*?)</th>", page)]
    assert header == ["class_id", "name", "IoU (%)", "paper_IoU", "FP (% of union)", "FN (% of union)",
                      "accuracy (%)", "gt_pixels", "pred_pixels", "tp_pixels"]
    body = page.split("<tbody>")[1]
    rows = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", body)]
    assert rows[0] == ["0", "background", "91.23", "\u2014", "5.00", "3.00", "97.00", "1000", "990", "960"]
    assert rows[1][1] == "a<b" and "a&lt;b" in page  # names escaped
    assert rows[2][2:7] == ["\u2014"] * 5             # no GT pixel: no score
    assert "the paper gives no per-class numbers" in page


def test_figures_of_predict_and_localise_have_a_legend_and_an_opaque_colour_bar(tmp_path):
    from sipe.figures import save_localisation_figure, save_segmentation_figure

    image = np.full((40, 60, 3), 128, np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[10:30, 10:40], labels[0] = 4, 255
    save_segmentation_figure(tmp_path / "seg.png", image, labels, NAMES, "x.jpg")
    with Image.open(tmp_path / "seg.png") as figure:
        pixels = np.asarray(figure.convert("RGB"))
    navy = np.argwhere(np.all(pixels == (0, 0, 128), axis=2))  # the legend's patch; the overlay blends it with grey
    assert len(navy) > 20 and navy[:, 1].min() > 2 * 0.9 * pixels.shape[0]  # right of the two pictures
    maps = np.full((2, 40, 60), 0.5, np.float32)
    save_localisation_figure(tmp_path / "loc.png", image, [0, 4], maps[:1], maps, NAMES, "x.jpg")
    with Image.open(tmp_path / "loc.png") as figure:
        pixels = np.asarray(figure.convert("RGB")).astype(int)
    # the colour bar runs from dark blue to dark red, unblended (the maps, all 0.5, are half-mixed green over grey)
    assert np.any((pixels[..., 0] > 110) & (pixels[..., 1] < 10) & (pixels[..., 2] < 10))
    assert np.any((pixels[..., 2] > 110) & (pixels[..., 0] < 10) & (pixels[..., 1] < 10))
