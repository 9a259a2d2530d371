"""The label-based dense CRF of SIPE/IRN (docs/method.md E), on pydensecrf.

``crf_inference_label`` turns a hard label map into a CRF-refined one: the unary puts probability
``gt_prob`` on the given label and spreads the rest evenly over the others; a Gaussian (position)
and a bilateral (position + colour) Potts kernel smooth it along the image's colour edges; after
``iterations`` mean-field steps the label of each pixel is the argmax of Q. This is the only CRF
the reference uses before DeepLab (docs/method.md E, F.1). ``crf_inference_probabilities`` is the
softmax-based CRF of deeplab-pytorch (docs/method.md G.4) that DeepLab's inference uses; both run the same
mean-field set-up, :func:`dense_crf`, and differ only in the unary and the kernel settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class CRFSettings:
    """The parameters of :func:`crf_inference_label`; the defaults are the reference's (docs/method.md E)."""

    iterations: int = 10          # mean-field iterations
    gt_prob: float = 0.7          # unary probability of the given label
    gaussian_sxy: float = 3.0     # position kernel: spatial std (pixels) ...
    gaussian_compat: float = 3.0  # ... and Potts weight
    bilateral_sxy: float = 50.0   # appearance kernel: spatial std (pixels) ...
    bilateral_srgb: float = 5.0   # ... colour std ...
    bilateral_compat: float = 10.0  # ... and Potts weight

    @classmethod
    def from_params(cls, section: dict) -> CRFSettings:
        """From the ``crf`` section of params.yaml (the keys are the field names)."""
        names = asdict(cls()).keys()
        return cls(**{k: section[k] for k in names})


def label_unary(labels: np.ndarray, n_labels: int, gt_prob: float) -> np.ndarray:
    """Unary energy [n_labels, H·W] float32 of a label map (docs/method.md E): −log(gt_prob) on the given label,
    −log((1 − gt_prob)/(n_labels − 1)) on every other (pydensecrf's ``unary_from_labels`` with
    ``zero_unsure=False``: label 0 is a class like any other)."""
    from pydensecrf.utils import unary_from_labels

    return unary_from_labels(labels, n_labels, gt_prob, zero_unsure=False)


def crf_inference_label(image: np.ndarray, labels: np.ndarray, n_labels: int,
                        settings: CRFSettings = CRFSettings()) -> np.ndarray:
    """CRF-refined label map (docs/method.md E ``crf_inference_label``): uint8 [H,W] with values in 0..n_labels−1.

    ``image`` is the original uint8 RGB [H,W,3]; ``labels`` an integer map [H,W] of values
    0..n_labels−1. Both kernels are Potts with pydensecrf's defaults (diagonal kernel, symmetric
    normalisation). With a single label there is nothing to decide: the map is returned as is.
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 RGB [H,W,3], got {image.dtype} {image.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"label map {labels.shape} and image {image.shape[:2]} differ in size")
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"labels must lie in 0..{n_labels - 1}, got {int(labels.min())}..{int(labels.max())}")
    if n_labels == 1:
        return np.zeros(labels.shape, dtype=np.uint8)
    return dense_crf(image, label_unary(labels.astype(np.int64), n_labels, settings.gt_prob), settings)


# docs/method.md G.4, deeplab-pytorch's CRF: Gaussian sxy 1, weight 3; bilateral sxy 67, srgb 3, weight 4; 10 iterations.
DEEPLAB_CRF = CRFSettings(iterations=10, gaussian_sxy=1.0, gaussian_compat=3.0, bilateral_sxy=67.0,
                          bilateral_srgb=3.0, bilateral_compat=4.0)
MIN_PROBABILITY = 1e-5  # docs/method.md G.4: unary = −log(clip(p, 1e-5))


def crf_inference_probabilities(image: np.ndarray, probs: np.ndarray,
                                settings: CRFSettings = DEEPLAB_CRF) -> np.ndarray:
    """CRF-refined label map (docs/method.md G.4) of class probabilities ``probs`` [K,H,W] (a softmax): unary
    −log(max(p, 1e-5)), then :func:`dense_crf`. ``image`` is the real uint8 RGB image (deeplab-pytorch
    passes its mean-subtracted float array cast to uint8, which wraps around: a bug not reproduced)."""
    from pydensecrf.utils import unary_from_softmax

    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[1:] != np.asarray(image).shape[:2]:
        raise ValueError(f"probabilities must be [K,H,W] at the image size {np.asarray(image).shape[:2]}, "
                         f"got {probs.shape}")
    return dense_crf(image, unary_from_softmax(probs, clip=MIN_PROBABILITY), settings)


def dense_crf(image: np.ndarray, unary: np.ndarray, settings: CRFSettings) -> np.ndarray:
    """Mean-field inference of a fully connected CRF on pydensecrf: ``unary`` energy [K, H·W], a Gaussian
    (position) and a bilateral (position + colour of the uint8 RGB ``image``) Potts kernel with
    pydensecrf's defaults (diagonal kernel, symmetric normalisation), ``settings.iterations`` steps;
    returns the argmax of Q as uint8 [H,W]."""
    import pydensecrf.densecrf as dcrf

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 RGB [H,W,3], got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    n_labels = unary.shape[0]
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=settings.gaussian_sxy, compat=settings.gaussian_compat)
    crf.addPairwiseBilateral(sxy=settings.bilateral_sxy, srgb=settings.bilateral_srgb,
                             rgbim=np.require(image, requirements=["C", "W"]),  # pydensecrf needs a writable buffer
                             compat=settings.bilateral_compat)
    q = np.asarray(crf.inference(int(settings.iterations)), dtype=np.float32)
    return np.argmax(q.reshape(n_labels, height, width), axis=0).astype(np.uint8)
