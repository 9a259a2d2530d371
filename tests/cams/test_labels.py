"""Label maps from localisation maps: IS-CAM argmax (no threshold) and the thresholded CAM baseline."""

from __future__ import annotations

import numpy as np
import pytest

from sipe.maps import cam_foreground, cam_labels, is_cam_labels, threshold_foreground

KEYS = np.array([0, 4, 9])


def test_is_cam_labels_known_argmax():
    is_cam = np.zeros((3, 2, 3), np.float16)
    is_cam[0] = [[0.9, 0.1, 0.2], [0.0, 0.5, 0.3]]
    is_cam[1] = [[0.1, 0.8, 0.2], [0.0, 0.4, 0.7]]
    is_cam[2] = [[0.2, 0.3, 0.6], [0.0, 0.6, 0.7]]
    labels = is_cam_labels(KEYS, is_cam)
    assert labels.dtype == np.uint8
    # pixel (1,0): all zero -> background (first channel wins ties); (1,2): tie 4 vs 9 -> 4
    assert labels.tolist() == [[0, 4, 9], [0, 9, 4]]


def test_is_cam_labels_has_no_threshold():
    # a weak background channel still loses only to a stronger class channel: no constant threshold
    is_cam = np.stack([np.full((2, 2), 0.01), np.full((2, 2), 0.02), np.zeros((2, 2))]).astype(np.float16)
    assert is_cam_labels(KEYS, is_cam).tolist() == [[4, 4], [4, 4]]


def test_cam_labels_threshold():
    cam = np.zeros((2, 2, 3), np.float16)
    cam[0] = [[0.10, 0.50, 0.30], [0.30, 0.00, 0.90]]
    cam[1] = [[0.05, 0.20, 0.40], [0.30, 0.00, 0.95]]
    assert cam_labels(KEYS, cam, 0.25).tolist() == [[0, 4, 9], [4, 0, 9]]
    assert cam_labels(KEYS, cam, 0.45).tolist() == [[0, 4, 0], [0, 0, 9]]
    assert cam_labels(KEYS, cam, 0.0).tolist() == [[4, 4, 9], [4, 0, 9]]  # exact 0 ties go to background
    assert cam_labels(KEYS, cam, 1.0).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert cam_labels(KEYS, cam, 0.3).dtype == np.uint8


def test_cam_labels_equals_argmax_with_constant_background():
    rng = np.random.default_rng(1)
    cam = rng.random((2, 30, 40)).astype(np.float16)
    for t in (0.1, 0.35, 0.6):
        padded = np.concatenate([np.full((1, 30, 40), t, np.float32), cam.astype(np.float32)])
        expected = KEYS[np.argmax(padded, axis=0)]
        np.testing.assert_array_equal(cam_labels(KEYS, cam, t), expected)
    fg_max, fg_label = cam_foreground(KEYS, cam)
    np.testing.assert_array_equal(threshold_foreground(fg_max, fg_label, 0.35), cam_labels(KEYS, cam, 0.35))


def test_cam_labels_without_foreground():
    assert cam_labels(np.array([0]), np.zeros((0, 2, 2), np.float16), 0.1).tolist() == [[0, 0], [0, 0]]


def test_shape_checks():
    with pytest.raises(ValueError, match="is_cam must be"):
        is_cam_labels(KEYS, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="cam must be"):
        cam_labels(KEYS, np.zeros((3, 3, 3)), 0.1)
