"""Overlay pictures: jet heat maps blended over the image, one row per image, CAM above IS-CAM, with a colour bar."""

from __future__ import annotations

import numpy as np
import pytest

from sipe.viz import (
    COLOUR_BAR,
    LINE_HEIGHT,
    PAD,
    SHEET_BACKGROUND,
    blend_heat,
    cam_vs_is_cam,
    colour_bar,
    jet,
    overlay,
    stack_rows,
    with_colour_bar,
)

ONE_LINE = LINE_HEIGHT + 2  # a caption strip of one line


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
    assert row.size == (4 * (64 + PAD) + PAD, 32 + ONE_LINE + PAD)  # the captions fit on one line
    pixels = np.asarray(row)
    tile = lambda n: pixels[PAD:PAD + 32, PAD + n * 68:PAD + n * 68 + 64]
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
    title_h = LINE_HEIGHT + PAD  # the heading with the image's name
    cam_h = 16 + ONE_LINE + PAD  # in 16-pixel tiles "CAM" is cut to one line, "IS-CAM" breaks after the hyphen
    row_h = 16 + 2 * LINE_HEIGHT + 2 + PAD
    assert sheet.size == (3 * (16 + PAD) + PAD, title_h + cam_h + row_h + PAD)
    pixels = np.asarray(sheet)
    assert np.any(pixels[:title_h] != SHEET_BACKGROUND)  # the heading is drawn
    # the CAM row's background column is 1 − max CAM: equal to the IS-CAM's background here
    cam_top, is_cam_top = title_h + PAD, title_h + cam_h + PAD
    np.testing.assert_array_equal(pixels[cam_top:cam_top + 16, 20:36], pixels[is_cam_top:is_cam_top + 16, 20:36])
    assert stack_rows([sheet, sheet]).size == (sheet.width, 2 * sheet.height + PAD)
    assert cam_vs_is_cam(image, keys, cam, is_cam, ["background", "a"], tile_height=16).height == cam_h + row_h + PAD


def test_colour_bar_above_the_overlays_shows_the_jet_scale():
    image = np.zeros((32, 64, 3), np.uint8)
    sheet = stack_rows([overlay(image, np.zeros((1, 32, 64), np.float32), [0], ["background"], "x", tile_height=32)])
    bar = colour_bar(sheet.width)
    shown = with_colour_bar(sheet)
    assert shown.size == (sheet.width, bar.height + sheet.height)
    pixels = np.asarray(shown)
    np.testing.assert_array_equal(pixels[:bar.height], np.asarray(bar))  # the bar is on top, seen first
    np.testing.assert_array_equal(pixels[bar.height:], np.asarray(sheet))
    # the bar's middle row runs through the jet colours from 0 (dark blue) to 1 (dark red), left to right
    colours = np.asarray(bar)
    rows = np.flatnonzero(np.all(colours == jet(np.array([0.0]))[0], axis=2).any(axis=1))
    assert rows.size == COLOUR_BAR[1]
    line = colours[rows[rows.size // 2]]
    start = int(np.flatnonzero(np.all(line == jet(np.array([0.0]))[0], axis=1))[0])
    width = min(COLOUR_BAR[0], sheet.width - 2 * PAD - 24)
    np.testing.assert_array_equal(line[start:start + width], jet(np.linspace(0.0, 1.0, width, dtype=np.float32)))
    assert line[start + width - 1].tolist() == [128, 0, 0]
    # the label above the bar and the tick labels below it are drawn (text pixels outside the bar)
    assert np.any(colours[:rows[0] - 1] != SHEET_BACKGROUND) and np.any(colours[rows[-1] + 4:] != SHEET_BACKGROUND)
