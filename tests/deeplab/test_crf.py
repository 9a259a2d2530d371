"""The denseCRF of docs/method.md G.4 on class probabilities, applied to the real uint8 image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sipe.refine.crf import DEEPLAB_CRF, crf_inference_probabilities


def _two_regions(noise_seed: int = 0):
    """A 40x48 image, dark left / bright right, and probabilities that favour the right class only weakly
    and with wrong pixels sprinkled in (class 0 left, class 1 right, class 2 nowhere)."""
    image = np.zeros((40, 48, 3), np.uint8)
    image[:, :20] = (30, 40, 50)
    image[:, 20:] = (220, 210, 200)
    truth = np.zeros((40, 48), np.uint8)
    truth[:, 20:] = 1
    rng = np.random.default_rng(noise_seed)
    probs = np.full((3, 40, 48), 0.1, np.float32)
    probs[0], probs[1] = np.where(truth == 0, 0.5, 0.4), np.where(truth == 1, 0.5, 0.4)
    flipped = rng.random((40, 48)) < 0.2
    probs[:2, flipped] = probs[1::-1, flipped]  # 20 % of the pixels prefer the wrong class
    return image, probs, truth, flipped


def test_crf_cleans_noise_along_colour_regions():
    image, probs, truth, flipped = _two_regions()
    assert flipped.sum() > 300 and not np.array_equal(probs.argmax(0), truth)
    labels = crf_inference_probabilities(image, probs)
    assert labels.dtype == np.uint8 and labels.shape == (40, 48)
    assert np.array_equal(labels, truth)


def test_without_iterations_the_crf_is_the_argmax_of_the_unary():
    image, probs, _, _ = _two_regions(1)
    probs[2, :5, :5] = 0.0  # below the 1e-5 clip: the unary stays finite
    assert np.array_equal(crf_inference_probabilities(image, probs, replace(DEEPLAB_CRF, iterations=0)), probs.argmax(0))


def test_evidence_spreads_over_each_colour_region():
    """Probabilities are uniform except in a strip along the edge: the bilateral kernel carries each side's
    label over its whole colour region (on a uniform image nothing would choose between the classes)."""
    image, probs, _, _ = _two_regions(2)
    strip = np.full_like(probs, 1 / 3)
    left = np.arange(16, 24) < 20
    strip[0, :, 16:24] = np.where(left, 0.8, 0.1)
    strip[1, :, 16:24] = np.where(left, 0.1, 0.8)
    labels = crf_inference_probabilities(image, strip)
    assert (labels[:, :20] == 0).mean() > 0.95 and (labels[:, 20:] == 1).mean() > 0.95
    flat = np.full_like(image, 128)
    assert not np.array_equal(crf_inference_probabilities(flat, strip), labels)
