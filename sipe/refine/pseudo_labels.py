"""Pseudo labels from IS-CAM and IRN boundaries by the random walk (docs/method.md F.5, SIPE's make_seg_labels).

1. :func:`boundary_map`: the IRN edge logits of [image, hflip(image)], zero-padded right/bottom,
   cropped to the stride-4 size (ceil(H/4), ceil(W/4)), averaged with the mirror's flipped back,
   then the sigmoid.
2. :func:`walk_scores`: IS-CAM bilinearly resized down to that size, raised to ``cam_power`` (1.5,
   SIPE-specific), propagated by :func:`~sipe.refine.random_walk.propagate_to_edge`.
3. :func:`rw_label_map`: the walk's scores upsampled ×4 (bilinear), cropped to (H, W), argmax,
   mapped through ``keys``: labels 0..C with no 255 and no background threshold (the IS-CAM
   background channel competes directly). The reference's division by the global max is left
   out: a positive scale cannot change the argmax.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sipe.data.transforms import normalize_image
from sipe.device import model_device
from sipe.refine.random_walk import propagate_to_edge

CAM_POWER = 1.5  # docs/method.md F.5 step 2


def stride4_size(height: int, width: int) -> tuple[int, int]:
    """The stride-4 grid of an H × W image: (ceil(H/4), ceil(W/4))."""
    return math.ceil(height / 4), math.ceil(width / 4)


@torch.no_grad()
def boundary_map(model, image: np.ndarray, pad_size: int) -> torch.Tensor:
    """IRN boundary probabilities [ceil(H/4), ceil(W/4)] of a uint8 RGB image (docs/method.md F.5 step 1).

    The pair [image, hflip(image)] is zero-padded (the mean colour) right and bottom to at least
    ``pad_size`` × ``pad_size`` (the reference's 512; a larger image is never cropped, a named
    deviation: the reference crops it) and runs through ``model.edge`` on the model's device.
    """
    device = model_device(model)
    x = normalize_image(image)
    pair = torch.stack([x, x.flip(-1)]).to(device)
    height, width = x.shape[-2:]
    pair = F.pad(pair, (0, max(0, pad_size - width), 0, max(0, pad_size - height)))
    h4, w4 = stride4_size(height, width)
    logits = model.edge(pair)[:, 0, :h4, :w4].float()
    return torch.sigmoid(0.5 * logits[0] + 0.5 * logits[1].flip(-1))


def walk_scores(is_cam: torch.Tensor, edge: torch.Tensor, cam_power: float = CAM_POWER, radius: int = 5,
                beta: float = 10.0, exp_times: int = 8) -> torch.Tensor:
    """Random-walk scores [K+1, h4, w4] (docs/method.md F.5 steps 2–3) of IS-CAM [K+1, H, W] on the boundary map [h4, w4].

    IS-CAM is resized to the boundary map's size (bilinear, align_corners=False, no antialiasing,
    docs/method.md H.1 items 7–8), raised to ``cam_power`` and propagated.
    """
    cams = F.interpolate(is_cam[None].float(), size=tuple(edge.shape), mode="bilinear", align_corners=False)[0]
    return propagate_to_edge(cams.pow(cam_power), edge.to(cams), radius, beta, exp_times)


def rw_label_map(keys, scores: torch.Tensor, height: int, width: int) -> np.ndarray:
    """uint8 [H, W] label map of the walk's scores [K+1, h4, w4] (docs/method.md F.5 step 4): ×4 bilinear
    upsampling (align_corners=False), crop to (H, W), argmax over channels, ``keys`` of the winner."""
    keys = np.asarray(keys, dtype=np.int64)
    h4, w4 = scores.shape[-2:]
    up = F.interpolate(scores[None], size=(4 * h4, 4 * w4), mode="bilinear", align_corners=False)[0]
    channel = up[:, :height, :width].argmax(dim=0).cpu().numpy()
    return keys[channel].astype(np.uint8)
