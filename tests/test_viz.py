"""Label colouring and contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sipe.viz import CAPTION_HEIGHT, PAD, colorize_labels, contact_sheet, contact_sheet_size, save_png


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
    assert sheet.size == (148, 154)
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
