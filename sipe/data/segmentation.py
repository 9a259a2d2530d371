"""Pixel-labelled training samples for DeepLab: images with their pseudo labels (docs/method.md G.2).

Augmentation, in the reference's order (deeplab-pytorch ``_augmentation``): random scale from a
fixed set (image bilinear, label nearest; new size = int(H·s), int(W·s)) → pad bottom/right to at
least ``crop`` (image with the mean colour, label with 255) → random ``crop`` × ``crop`` window →
left-right flip with p = 0.5. The image is normalised first, so "the mean colour" is 0.

Input encoding depends on the weights the network starts from (:data:`STYLES`): ``torchvision``
= RGB, ImageNet mean/std (docs/method.md A.4, as every other network of the pipeline); ``caffe`` = BGR, 0–255
minus the mean (104.008, 116.669, 122.675), no std (docs/method.md G.2), for Caffe-converted weights.

One sample is a dict: ``image`` float32 [3, crop, crop], ``label`` int64 [crop, crop] (0..C, 255 =
ignore), ``id`` str. Every random draw comes from the explicit generator of
:meth:`PseudoLabelDataset.sample`, so a resumed training run replays the same crops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from sipe.data.classification import load_rgb
from sipe.data.manifest import DatasetManifest
from sipe.data.transforms import normalize_image, random_hflip
from sipe.errors import DatasetError, first_offenders
from sipe.io import IGNORE_INDEX, check_complete, read_label_of_size
from sipe.models.deeplab import STYLES

TRAIN_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)      # docs/method.md G.2
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)    # docs/method.md G.2


def normalize_for(image: np.ndarray | Image.Image, style: str = "torchvision") -> torch.Tensor:
    """uint8 RGB image → float32 [3,H,W] in the encoding of ``style`` (module docstring)."""
    if style == "torchvision":
        return normalize_image(image)
    if style != "caffe":
        raise ValueError(f"unknown input style {style!r}; choose one of {', '.join(STYLES)}")
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    bgr = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1])).permute(2, 0, 1)
    return bgr - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32)[:, None, None]


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """A uniform integer in [low, high], both ends included (python ``random.randint``)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def random_scale(image: torch.Tensor, label: np.ndarray, scales, generator: torch.Generator
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """Rescale by a factor drawn from ``scales`` to (int(H·s), int(W·s)): image bilinear
    (``align_corners=False``, no antialiasing, as cv2 INTER_LINEAR), label PIL nearest."""
    scale = float(scales[_randint(0, len(scales) - 1, generator)])
    height, width = label.shape
    size = (max(1, int(height * scale)), max(1, int(width * scale)))
    if size == (height, width):
        return image, label
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    label = np.asarray(Image.fromarray(label).resize(size[::-1], Image.Resampling.NEAREST))
    return image, label


def pad_and_crop(image: torch.Tensor, label: np.ndarray, crop: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """Pad bottom/right to at least ``crop`` (image 0 = mean colour, label 255), then a random window
    (row offset drawn first)."""
    height, width = label.shape
    pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    top = _randint(0, label.shape[0] - crop, generator)
    left = _randint(0, label.shape[1] - crop, generator)
    return image[:, top:top + crop, left:left + crop], label[top:top + crop, left:left + crop]


@dataclass(frozen=True)
class SegAugment:
    """DeepLab's training augmentation (docs/method.md G.2) of one uint8 RGB image and its label map.

    ``augment(image, label, generator)`` → (image float32 [3,crop,crop], label int64 [crop,crop]).
    Draws, in order: scale, crop row, crop column, flip.
    """

    crop: int = 321
    scales: tuple[float, ...] = TRAIN_SCALES
    flip_p: float = 0.5
    style: str = "torchvision"

    def __call__(self, image, label: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        tensor = normalize_for(image, self.style)
        tensor, label = random_scale(tensor, label, self.scales, generator)
        tensor, label = pad_and_crop(tensor, label, self.crop, generator)
        tensor, flipped = random_hflip(tensor.contiguous(), generator, self.flip_p)
        if flipped:
            label = label[:, ::-1]
        return tensor.contiguous(), torch.from_numpy(label.astype(np.int64))


def label_files(labels_dir: str | os.PathLike, ids: list[str]) -> list[Path]:
    """``labels_dir/<id>.png`` for every id; one-line :class:`DatasetError` when some are missing or a
    sharded stage left the folder incomplete (:func:`sipe.io.check_complete`)."""
    check_complete(labels_dir, DatasetError)
    paths = [Path(labels_dir) / f"{i}.png" for i in ids]
    missing = [p.stem for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{labels_dir}: no label PNG for {len(missing)} of {len(ids)} images: "
                           f"{first_offenders(missing)}")
    return paths


def read_pseudo_label(path: Path, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """A label PNG checked against its image: same size, values in 0..C−1 or 255."""
    label = read_label_of_size(path, shape, "its image")
    bad = np.unique(label[(label >= num_classes) & (label != IGNORE_INDEX)])
    if bad.size:
        raise DatasetError(f"{path}: label values outside 0..{num_classes - 1} and 255: {first_offenders(bad.tolist())}")
    return label


class PseudoLabelDataset(Dataset):
    """The ``split`` images of a prepared dataset with the label maps of ``labels_dir`` (``<id>.png``).

    Missing images or label files are reported up front; sizes and values when a sample is loaded.
    """

    def __init__(self, manifest: DatasetManifest, labels_dir: str | os.PathLike, split: str = "train_aug",
                 augment: SegAugment = SegAugment()):
        self.manifest = manifest
        self.ids = manifest.ids(split)
        self.augment = augment
        self.images = [manifest.image_path(split, i) for i in self.ids]
        absent = [str(p) for p in self.images if not p.is_file()]
        if absent:
            raise DatasetError(f"{absent[0]}: image not found"
                               + (f" (and {len(absent) - 1} more {split} images)" if len(absent) > 1 else ""))
        self.labels = label_files(labels_dir, self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, index: int, generator: torch.Generator) -> dict:
        image = load_rgb(self.images[index])
        label = read_pseudo_label(self.labels[index], (image.height, image.width), self.manifest.num_classes)
        tensor, target = self.augment(image, label, generator)
        return {"image": tensor, "label": target, "id": self.ids[index]}

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, torch.Generator().manual_seed(int(index)))
