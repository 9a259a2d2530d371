"""Overlay pictures: jet heat maps blended over the image, one row per image, CAM above IS-CAM."""

from __future__ import annotations

import numpy as np
import pytest

from sipe.viz import CAPTION_HEIGHT, PAD, blend_heat, cam_vs_is_cam, jet, overlay, stack_rows


def test_jet_end_points_and_blend():
    colours = jet(np.array([0.0, 1.0, 2.0, -1.0]))
    assert colours.dtype == np.uint8
    assert colours[0].tolist() == [0, 0, 128] and colours[1].tolist() == [128, 0, 0]  # dark blue, dark red
    assert colours[2].tolist() == colours[1].tolist() and colours[3].tolist() == colours[0].tolist()  # clipped
    image = np.full((2, 2, 3), 200, np.uint8)
    mixed = blend_heat(image, np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert mixed[0, 0].tolist() == [100, 100, 164] and mixed[0, 1].tolist() == [164, 100, 100]


def test_overlay_row_layout():
    image = np.zeros((20, 40, 3), np.uint8)
    maps = np.zeros((3, 20, 40), np.float32)
    maps[1, :, 20:] = 1.0
    row = overlay(image, maps, [0, 2, 5], ["background", "a", "b", "c", "d", "e"], "title", tile_height=32)
    assert row.size == (4 * (64 + PAD) + PAD, 32 + CAPTION_HEIGHT + PAD)
    pixels = np.asarray(row)
    tile = lambda n: pixels[PAD:PAD + 32, PAD + n * 68:PAD + n * 68 + 64]  # noqa: E731
    assert tile(0).max() == 0                      # the image itself (black)
    assert tile(1)[16, 10].tolist() == [0, 0, 64]  # map 0 = 0 -> half dark blue
    assert tile(2)[16, 50].tolist() == [64, 0, 0]  # map 1 right half = 1 -> half dark red
    with pytest.raises(ValueError, match="maps must be"):
        overlay(image, maps[:2], [0, 2, 5], ["background"])


def test_cam_vs_is_cam_rows_align():
    image = np.zeros((16, 16, 3), np.uint8)
    keys = np.array([0, 1])
    cam = np.zeros((1, 16, 16), np.float16)
    cam[0, :8] = 1
    is_cam = np.stack([1 - cam[0], cam[0]]).astype(np.float16)
    sheet = cam_vs_is_cam(image, keys, cam, is_cam, ["background", "a"], "x", tile_height=16)
    row_h = 16 + CAPTION_HEIGHT + PAD
    assert sheet.size == (3 * (16 + PAD) + PAD, 2 * row_h + PAD)
    pixels = np.asarray(sheet)
    # the CAM row's background column is 1 − max CAM: equal to the IS-CAM's background here
    np.testing.assert_array_equal(pixels[PAD:PAD + 16, 20:36], pixels[row_h + PAD:row_h + PAD + 16, 20:36])
    assert stack_rows([sheet, sheet]).size == (sheet.width, 2 * sheet.height + PAD)
