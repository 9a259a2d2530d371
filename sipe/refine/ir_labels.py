"""CRF label maps of IS-CAM and the inter-pixel-relation (IR) labels built from them (docs/method.md E, F.1).

* :func:`crf_label_map` = ``keys[CRF(argmax_k IS-CAM)]``, the background channel optionally scaled
  first. With the full background it is ``fg_conf`` of docs/method.md F.1, which is also the paper's "+dCRF"
  label map (docs/method.md E, author in issue #8).
* :func:`confident_labels` combines ``fg_conf`` with ``bg_conf`` (the same with the background
  channel ×0.5) into the IR labels: confident foreground, confident background, 255 elsewhere.
"""

from __future__ import annotations

import numpy as np

from sipe.io import IGNORE_INDEX
from sipe.refine.crf import CRFSettings, crf_inference_label

IR_BG_ATTENUATION = 0.5  # docs/method.md F.1: the background channel of the bg_conf pass is halved


def crf_label_map(image: np.ndarray, keys: np.ndarray, is_cam: np.ndarray, settings: CRFSettings = CRFSettings(),
                  bg_scale: float = 1.0) -> np.ndarray:
    """``keys[CRF(image, argmax_k IS-CAM′)]`` as uint8 [H,W] (docs/method.md E, F.1 steps 1–2).

    ``is_cam`` [K+1,H,W] holds the rows of ``keys`` (background first); IS-CAM′ is ``is_cam`` with
    its background row multiplied by ``bg_scale`` (1 for ``fg_conf``, 0.5 for ``bg_conf``). The CRF
    runs on the channel indices with n_labels = K+1; ties of the argmax go to the lower channel.
    """
    keys = np.asarray(keys, dtype=np.int64)
    scores = np.asarray(is_cam, dtype=np.float32)
    if scores.ndim != 3 or scores.shape[0] != keys.size:
        raise ValueError(f"is_cam must be [{keys.size},H,W] for {keys.size} keys, got shape {scores.shape}")
    if bg_scale != 1.0:
        scores = scores.copy()
        scores[0] *= np.float32(bg_scale)
    channels = np.argmax(scores, axis=0)
    return keys[crf_inference_label(image, channels, keys.size, settings)].astype(np.uint8)


def confident_labels(fg_conf: np.ndarray, bg_conf: np.ndarray) -> np.ndarray:
    """IR labels from the two CRF maps (docs/method.md F.1 step 3), uint8 [H,W] in {0..C, 255}.

    Start from ``fg_conf``; where it is background the pixel becomes 255 (uncertain), unless
    ``bg_conf`` is background there too, in which case it stays 0 (confident background). Confident
    foreground = classes that win even against the full background channel.
    """
    fg_conf, bg_conf = np.asarray(fg_conf), np.asarray(bg_conf)
    if fg_conf.shape != bg_conf.shape:
        raise ValueError(f"fg_conf {fg_conf.shape} and bg_conf {bg_conf.shape} differ in size")
    out = fg_conf.astype(np.uint8, copy=True)
    background = fg_conf == 0
    out[background] = IGNORE_INDEX
    out[background & (bg_conf == 0)] = 0
    return out
