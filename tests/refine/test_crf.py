"""denseCRF label maps (docs/method.md E) and IR labels (docs/method.md F.1) on hand-made images and maps."""

from __future__ import annotations

import numpy as np
import pytest

from sipe.refine.crf import CRFSettings, crf_inference_label, label_unary
from sipe.refine.ir_labels import confident_labels, crf_label_map


def two_region_image(h: int = 40, w: int = 48, split: int = 24) -> np.ndarray:
    """Dark left part, bright right part (columns < split / >= split)."""
    image = np.full((h, w, 3), 30, np.uint8)
    image[:, split:] = 220
    return image


def test_unary_is_the_reference_label_unary():
    labels = np.array([[0, 2], [1, 2]])
    u = label_unary(labels, 3, 0.7)
    assert u.shape == (3, 4) and u.dtype == np.float32
    on, off = -np.log(0.7), -np.log(0.3 / 2)
    expected = np.full((3, 4), off, np.float32)
    expected[[0, 2, 1, 2], np.arange(4)] = on  # label 0 is a class like any other (zero_unsure=False)
    np.testing.assert_allclose(u, expected, rtol=1e-6)


def test_crf_snaps_labels_to_colour_edges():
    image = two_region_image()
    image.flags.writeable = False  # as np.asarray(PIL image) gives it
    labels = np.zeros((40, 48), np.int64)
    labels[:, 20:] = 1  # the label boundary is 4 px left of the colour edge at column 24
    out = crf_inference_label(image, labels, 2)
    assert out.dtype == np.uint8 and out.shape == (40, 48)
    assert np.all(out[:, :24] == 0) and np.all(out[:, 24:] == 1)


def test_crf_removes_isolated_noise_in_a_flat_region():
    rng = np.random.default_rng(1)
    image = np.full((32, 32, 3), 128, np.uint8)
    labels = (rng.random((32, 32)) < 0.1).astype(np.int64)  # 10 % salt on a background region
    assert np.all(crf_inference_label(image, labels, 2) == 0)


def test_crf_settings_matter():
    image = two_region_image()
    labels = np.zeros((40, 48), np.int64)
    labels[:, 20:] = 1
    weak = CRFSettings(iterations=1, bilateral_compat=0.0, gaussian_compat=0.0)
    assert np.array_equal(crf_inference_label(image, labels, 2, weak), labels)  # unary only: unchanged


def test_crf_single_label_and_bad_input():
    image = two_region_image()
    assert np.all(crf_inference_label(image, np.zeros((40, 48), np.int64), 1) == 0)
    with pytest.raises(ValueError, match="labels must lie"):
        crf_inference_label(image, np.full((40, 48), 3), 3)
    with pytest.raises(ValueError, match="differ in size"):
        crf_inference_label(image, np.zeros((40, 40), np.int64), 2)


def test_crf_label_map_uses_keys_and_bg_scale():
    image = two_region_image()
    keys = np.array([0, 7])
    is_cam = np.zeros((2, 40, 48), np.float32)
    is_cam[0] = 0.6
    is_cam[1, :, 24:] = 0.5   # the class loses to the full background, wins against half of it
    is_cam[1, :, :24] = 0.1
    assert np.all(crf_label_map(image, keys, is_cam) == 0)
    bg_conf = crf_label_map(image, keys, is_cam, bg_scale=0.5)
    assert set(np.unique(bg_conf)) == {0, 7}
    assert np.all(bg_conf[:, :24] == 0) and np.all(bg_conf[:, 24:] == 7)


def test_confident_labels_combination():
    fg = np.array([[0, 0, 3, 3], [0, 5, 0, 0]], np.uint8)
    bg = np.array([[0, 3, 3, 0], [5, 5, 0, 0]], np.uint8)
    # fg class -> kept; fg 0 and bg 0 -> 0; fg 0 and bg class -> 255
    assert confident_labels(fg, bg).tolist() == [[0, 255, 3, 3], [255, 5, 0, 0]]
