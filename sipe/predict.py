"""Use a trained model on any image: the inference that ``sipe predict``, ``sipe localise`` and
:func:`sipe.load` share.

- Images: a path, a PIL image or an array of any mode (grayscale, RGBA, palette, ...) becomes uint8 RGB
  (:func:`open_image`); a path that cannot be read, is empty or holds more than ``max_pixels`` pixels is
  an :class:`ImageError` naming it.
- DeepLab (:meth:`Segmenter.predict`): :func:`sipe.stages.deeplab.predict_probabilities` (docs/method.md G.3),
  the argmax or, with ``crf``, the docs/method.md G.4 denseCRF, exactly as the ``segment`` stage.
- SIPE (:meth:`Localiser.localise`): :func:`sipe.maps.multiscale_maps` (docs/method.md A.5, D) with the given
  classes (or the top-k of the network's own classifier score) as the image labels, exactly as ``make-cams``.
- Class names (index 0 = background): a prepared dataset's manifest when given, else the checkpoint's
  ``meta["classes"]``, else ``background``, ``class 1``, ``class 2``, ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sipe.errors import SipeError, one_line
from sipe.io import read_torch_file

MAX_PIXELS = 50_000_000  # an image larger than this is refused (PIL's decompression-bomb limit is 89 M)
MIN_SIDE = 8             # nor one narrower: DeepLab's 0.5 MSC input of a 1-pixel side would be empty


class ImageError(SipeError):
    """An input image that cannot be used (one line naming it)."""


def as_rgb(image) -> np.ndarray:
    """A PIL image or an array ([H,W], [H,W,1], [H,W,3], [H,W,4]; uint8, or floats in [0, 1]) as uint8 RGB [H,W,3]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., :3] if array.shape[2] != 1 else array[..., 0]
    if array.ndim not in (2, 3) or min(array.shape[:2], default=0) < 1:
        raise ValueError(f"image must be [H,W], [H,W,1], [H,W,3] or [H,W,4] with H, W >= 1, got shape {array.shape}")
    if array.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array)


def open_image(source, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``source`` (a path, a PIL image or an array) as uint8 RGB [H,W,3]; :class:`ImageError` for a path
    that is missing, empty, unreadable, larger than ``max_pixels`` or with a side under ``MIN_SIDE``."""
    if not isinstance(source, (str, os.PathLike)):
        return as_rgb(source)
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"{path}: image not found")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise ImageError(f"{path}: image of {image.width}x{image.height} pixels exceeds the limit of "
                                 f"{max_pixels} pixels")
            if min(image.size) < MIN_SIDE:
                raise ImageError(f"{path}: image of {image.width}x{image.height} pixels is too small (sides of at "
                                 f"least {MIN_SIDE})")
            return as_rgb(image)
    except ImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: cannot read image ({one_line(exc, 160)})") from None


def class_names(num_classes: int, data: str | os.PathLike | None = None, meta: dict | None = None) -> list[str]:
    """Names of the ``num_classes`` classes (background included): the manifest of ``data``, else
    ``meta["classes"]``, else ``background``, ``class 1``, ...; a manifest of another size is an error."""
    if data is not None:
        from sipe.data.manifest import DatasetManifest

        manifest = DatasetManifest.load(data)
        if manifest.num_classes != num_classes:
            raise SipeError(f"{manifest.root}: the dataset has {manifest.num_classes} classes, the model "
                            f"{num_classes}")
        return list(manifest.classes)
    names = (meta or {}).get("classes")
    if isinstance(names, list) and len(names) == num_classes and all(isinstance(n, str) for n in names):
        return list(names)
    return ["background"] + [f"class {k}" for k in range(1, num_classes)]


def class_ids(wanted: Sequence[str | int], names: Sequence[str]) -> list[int]:
    """Foreground class ids of ``wanted`` (names, case-insensitive, or ids 1..K-1); one-line error otherwise."""
    lookup = {name.lower(): k for k, name in enumerate(names)}
    ids = []
    for item in wanted:
        text = str(item).strip()
        k = int(text) if text.isdigit() else lookup.get(text.lower())
        if k is None or not 1 <= k < len(names):
            raise SipeError(f"unknown class {text!r}; foreground classes: {', '.join(names[1:])} (or ids 1.."
                            f"{len(names) - 1})")
        ids.append(k)
    return sorted(set(ids))


@contextlib.contextmanager
def single_scale(model, msc: bool = True):
    """With ``msc=False`` the DeepLab runs on the 1.0 input only (no extra MSC scales) inside the block."""
    scales = model.scales
    if not msc:
        model.scales = ()
    try:
        yield model
    finally:
        model.scales = scales


class Loaded:
    """A network of a checkpoint with its class names; other attributes are the network's."""

    def __init__(self, net: torch.nn.Module, classes: list[str], meta: dict):
        self.net, self.classes, self.meta = net, classes, meta

    def __getattr__(self, name):
        if "net" not in self.__dict__:  # not yet (or never) initialised: no recursion
            raise AttributeError(name)
        return getattr(self.__dict__["net"], name)


class Segmenter(Loaded):
    """A DeepLabV2 that labels images (docs/method.md G.3, G.4)."""

    def probabilities(self, image, flip: bool = False, msc: bool = True) -> np.ndarray:
        """Class probabilities float32 [K,H,W] of ``image`` (any mode, :func:`as_rgb`)."""
        from sipe.stages.deeplab import predict_probabilities

        with single_scale(self.net, msc):
            return predict_probabilities(self.net, as_rgb(image), flip=flip)

    def predict(self, image, flip: bool = False, crf: bool = True, msc: bool = True) -> np.ndarray:
        """Label map uint8 [H,W] (class indices of :attr:`classes`): the argmax of :meth:`probabilities`,
        or with ``crf`` their denseCRF (docs/method.md G.4); the ``segment`` stage's labels (the defaults are
        params.yaml's ``deeplab.flip`` and ``deeplab.crf``)."""
        from sipe.refine.crf import crf_inference_probabilities

        image = as_rgb(image)
        probs = self.probabilities(image, flip=flip, msc=msc)
        if crf:
            return crf_inference_probabilities(image, probs)
        return probs.argmax(axis=0).astype(np.uint8)


class Localiser(Loaded):
    """A SIPENet that gives the CAM and IS-CAM of images (docs/method.md A.5, D)."""

    @torch.no_grad()
    def scores(self, image) -> np.ndarray:
        """Classifier scores float32 [K-1] of the foreground classes (GAP of the CAM, docs/method.md B.3),
        one forward pass at scale 1."""
        from sipe.data.transforms import normalize_image
        from sipe.device import model_device

        device = model_device(self.net)
        x4, _ = self.net.features(normalize_image(as_rgb(image))[None].to(device))
        return self.net.classifier(x4).mean(dim=(2, 3))[0].float().cpu().numpy()

    def localise(self, image, classes: Sequence[str | int] | None = None, top_k: int = 1,
                 scales: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys int64 [K+1], cam [K,H,W], is_cam [K+1,H,W])`` float32, as in a map file (:mod:`sipe.maps`):
        ``classes`` (names or ids), or the ``top_k`` best-scored classes, are the image labels."""
        from sipe.maps import DEFAULT_SCALES, label_vector, map_keys, multiscale_maps, select_present

        image = as_rgb(image)
        if classes:
            ids = class_ids(classes, self.classes)
        else:
            ids = (np.argsort(-self.scores(image), kind="stable")[:max(1, int(top_k))] + 1).tolist()
        keys = map_keys(ids)
        cam, is_cam = multiscale_maps(self.net, image, label_vector(keys[1:], len(self.classes)),
                                      tuple(scales or DEFAULT_SCALES))
        return (keys, *select_present(keys, cam, is_cam))


def _kinds():
    from sipe.models.deeplab import DeepLabV2
    from sipe.models.irn import IRN
    from sipe.models.sipe_net import SIPENet

    return {SIPENet: Localiser, DeepLabV2: Segmenter, IRN: None}


def load(path: str | os.PathLike, device=None, data: str | os.PathLike | None = None):
    """The network of any of the pipeline's checkpoints, told apart by its config MARKER: a SIPENet as a
    :class:`Localiser`, a DeepLabV2 as a :class:`Segmenter` (both with :func:`class_names`), an IRN as
    itself; on ``device`` (default: CUDA if available), in eval mode."""
    from sipe.device import select_device
    from sipe.models.checkpoint import model_from_checkpoint

    ckpt = read_torch_file(path, "model checkpoint")
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    kinds = _kinds()
    found = [cls for cls in kinds if isinstance(config, dict) and cls.MARKER in config]
    if len(found) != 1:
        raise SipeError(f"{path}: not a checkpoint of the pipeline (no SIPE, DeepLab or IRN config; train it with "
                        f"the pipeline or convert it)")
    cls = found[0]
    net = model_from_checkpoint(Path(path), ckpt, cls, select_device(device))
    wrapper = kinds[cls]
    if wrapper is None:
        return net
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    count = int(config["num_classes"]) + (1 if wrapper is Localiser else 0)
    return wrapper(net, class_names(count, data, meta), meta)


__all__ = ["MAX_PIXELS", "ImageError", "Localiser", "Segmenter", "as_rgb", "class_ids", "class_names", "load",
           "open_image"]
